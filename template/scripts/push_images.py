#!/usr/bin/env python3
"""Tag the project's images for a registry and push them (`make push`).

    push_images.py --engine podman --registry registry.example.com:5000/data \
        --tag 1.4.0 --image localhost/proj-webserver:1.4.0 ...

Each local image localhost/NAME:TAG becomes REGISTRY/NAME:TAG. Run first with --check (as
`make push` does, before it builds): it checks that REGISTRY is a valid reference, that TAG
is a valid tag and that the registry answers on its port, so a bad value fails with one line
and leaves the engine's store as it was. A push that fails half-way removes the tags it made.
`make kube-up` and `make quadlet-install` run the same check (--check --target=kube-up) before
they point the kube YAML at REGISTRY's images, `make helm-values` before it writes the Helm
values for them. Standard library only.
"""

import argparse
import re
import socket
import subprocess
import sys

# The grammar of github.com/distribution/reference: a domain (with a dot or a port, or
# "localhost", so that no engine mistakes it for a Docker Hub namespace), then path
# components of lower-case letters and digits joined by '.', '_', '__' or dashes.
LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
DOMAIN = rf"(?:localhost|(?:{LABEL}\.)+{LABEL}|\[[0-9a-fA-F:]+\]|{LABEL}(?=:))"
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PORT = r"(?::(?P<port>[0-9]{1,5}))?"
REGISTRY = re.compile(rf"(?P<domain>{DOMAIN}){PORT}(?P<path>(/{COMPONENT})*)\Z")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


# The make target that runs this script, named in its error lines (--target).
TARGET = "push"


def fail(message: str) -> None:
    print(f"error: make {TARGET}: {message}", file=sys.stderr)
    sys.exit(1)


def engine(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([name, *args], capture_output=True, text=True)


def reachable(host: str, port: int) -> str | None:
    """None when something accepts TCP connections on host:port, else why not."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=5):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def remote(image: str, registry: str, tag: str) -> str:
    """The registry's name of the local image localhost/NAME:TAG: REGISTRY/NAME:tag."""
    name = image.rsplit("/", 1)[-1].rsplit(":", 1)[0]
    return f"{registry}/{name}:{tag}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--registry", default="")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--push-flag", action="append", default=[], help="passed to `ENGINE push`")
    parser.add_argument("--image", action="append", default=[], help="localhost/NAME:TAG")
    parser.add_argument("--check", action="store_true", help="check REGISTRY, tag and port only")
    parser.add_argument("--target", default="push", help="the make target, for the error lines")
    args = parser.parse_args()
    global TARGET
    TARGET = args.target

    registry = args.registry.rstrip("/")
    if not registry:
        example = f"make {TARGET} REGISTRY=registry.example.com/data"
        fail(f"set REGISTRY=host[:port][/path], e.g. {example}")
    match = REGISTRY.match(registry)
    if not match:
        fail(
            f"REGISTRY={args.registry!r} is not a registry reference: host[:port][/path], the "
            "host with a dot, a port or 'localhost', the path of lower-case letters, digits, . _ -"
        )
    if not TAG.match(args.tag):
        fail(f"IMAGE_TAG={args.tag!r} is not a tag: 1-128 of A-Z a-z 0-9 _ . - (not first . or -)")
    port = int(match["port"] or 443)
    if why := reachable(match["domain"], port):
        where = f"{match['domain']}:{port}"
        done = {"push": "built, tagged or pushed", "helm-values": "written"}.get(
            TARGET, "started or installed"
        )
        fail(f"{where} does not answer ({why}); nothing was {done}")
    if args.check:
        return
    inspect = ("image", "inspect")  # every engine's CLI has it
    missing = [image for image in args.image if engine(args.engine, *inspect, image).returncode]
    if missing:
        fail(f"not built: {', '.join(missing)}; run make build")

    made: list[str] = []
    for image in args.image:
        target = remote(image, registry, args.tag)
        result = engine(args.engine, "tag", image, target)
        if result.returncode == 0:
            made.append(target)
            result = engine(args.engine, "push", *args.push_flag, target)
        if result.returncode:
            if made:
                engine(args.engine, "rmi", *made)
            lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            last = lines[-1] if lines else "no message"
            fail(f"pushing {target} failed: {last} (the tags it made were removed)")
        print(f"pushed {target}")
    print(f"{len(made)} images in {registry}, tag {args.tag}")


if __name__ == "__main__":
    main()

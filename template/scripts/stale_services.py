"""Print the services whose running container is older than their image (`make up` runs this).

    python3 scripts/stale_services.py --engine podman --project SLUG --tag TAG SERVICE...

After `make build` rebuilt an image, its container must be created again to run it. Docker's
compose does that by itself on `up`; podman-compose compares the service's definition only,
so a rebuilt image (new code, new dependencies) would not reach a running container. Each
SERVICE's container (SLUG-SERVICE) is compared with its image (localhost/SLUG-SERVICE:TAG);
a service without a container, or without an image, is not printed. SERVICE:IMAGE is a service
that runs another service's image (the read-only webserver runs the webserver's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def inspect(engine: str, kind: str, name: str) -> dict | None:
    done = subprocess.run([engine, kind, "inspect", name], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    found = json.loads(done.stdout or "[]")
    return found[0] if found else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--tag", default="latest")
    parser.add_argument("services", nargs="*")
    args = parser.parse_args(argv)
    stale = []
    for given in args.services:
        service, _, of = given.partition(":")
        container = inspect(args.engine, "container", f"{args.project}-{service}")
        image = inspect(
            args.engine, "image", f"localhost/{args.project}-{of or service}:{args.tag}"
        )
        if container and image and container.get("Image") != image.get("Id"):
            stale.append(service)
    print(" ".join(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Write the Helm values of the project's images, and install the release (`make helm-values`,
`make helm-install`).

    helm.py values --engine podman --project SLUG --local localhost --registry R --tag TAG
    helm.py install --helm helm --release SLUG --namespace SLUG --version 1.13.27 [-- FLAGS]

deploy/helm/values.yaml names the images @REGISTRY@/SLUG-NAME:@IMAGE_TAG@; `values` writes
.build/helm/values.yaml with both filled in: REGISTRY (checked as `make push` checks it,
scripts/push_images.py --check) or, without one, --local (the names `make build` gives the
images, for a cluster whose nodes were loaded with them), and IMAGE_TAG (latest without one,
with a warning). Helm itself cannot fill them in: it merges values files but replaces lists
whole, and the code locations are a list. `install` runs `helm upgrade --install` of the
official chart with that file and FLAGS (HELM_FLAGS), printing the command without FLAGS,
which may name a secret. Standard library only.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

SOURCE = Path("deploy/helm/values.yaml")
VALUES = Path(".build/helm/values.yaml")
CHART = ["dagster", "--repo", "https://dagster-io.github.io/helm"]


def render(text: str, registry: str, tag: str, pins: dict[str, str] | None = None) -> str:
    """The values `text` with the images of `registry` and `tag`, and (prebuilt platform
    images) `pins`: placeholder -> value."""
    for placeholder, value in (pins or {}).items():
        text = text.replace(placeholder, value)
    return text.replace("@REGISTRY@", registry).replace("@IMAGE_TAG@", tag)


def platform_pins(args: argparse.Namespace) -> dict[str, str]:
    """The placeholders of the pinned platform images (platform/images.lock): the chart joins
    repository and tag with ':', so the tag is TAG@DIGEST."""
    if not args.platform_tag:
        return {}
    import images  # scripts/images.py, beside this file (prebuilt projects)

    try:
        pins = images.read_pins(Path("platform/images.lock"), args.platform_tag)
    except (OSError, images.Refused) as error:
        raise SystemExit(f"error: make helm-values: {error} (make pin-images)") from None
    found = {"@PLATFORM_REGISTRY@": images.registry_setting(args.platform_registry)}
    for name in ("webserver", "daemon"):
        found[f"@{name.upper()}_PIN@"] = f"{args.platform_tag}@{pins[name]}"
    return found


def command(args: argparse.Namespace) -> list[str]:
    """helm upgrade --install, without HELM_FLAGS."""
    return [
        *shlex.split(args.helm), "upgrade", "--install", args.release, *CHART,
        "--version", args.version, "--namespace", args.namespace, "-f", str(VALUES),
    ]  # fmt: skip


def values(args: argparse.Namespace) -> int:
    tag = args.tag or "latest"
    if args.registry:
        checked = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("push_images.py")), "--check"]
            + ["--target=helm-values", f"--engine={args.engine}", f"--registry={args.registry}"]
            + [f"--tag={tag}"]
        )
        if checked.returncode:
            return checked.returncode
    if tag == "latest":
        print(
            "warning: IMAGE_TAG is 'latest': nodes that already hold an image of that tag keep it"
            " (pullPolicy IfNotPresent); push a version or git SHA",
            file=sys.stderr,
        )
    registry = args.registry or args.local
    VALUES.parent.mkdir(parents=True, exist_ok=True)
    partial = VALUES.with_name(VALUES.name + ".partial")
    partial.write_text(render(SOURCE.read_text(), registry, tag, platform_pins(args)))
    partial.replace(VALUES)
    local = "" if args.registry else " (the local names: no REGISTRY)"
    print(f"wrote {VALUES}; its images: {registry}/{args.project}-NAME:{tag}{local}")
    return 0


def install(args: argparse.Namespace, flags: list[str]) -> int:
    helm = command(args)
    print(shlex.join(helm) + (" HELM_FLAGS (not shown)" if flags else ""), flush=True)
    return subprocess.run([*helm, *flags]).returncode


def main(argv: list[str]) -> int:
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["values", "install"])
    parser.add_argument("--engine", default="")
    parser.add_argument("--project", default="")
    parser.add_argument("--local", default="localhost", help="the registry of `make build`")
    parser.add_argument("--registry", default="", help="REGISTRY")
    parser.add_argument("--tag", default="", help="IMAGE_TAG")
    parser.add_argument("--platform-tag", default="", help="PLATFORM_TAG (prebuilt)")
    parser.add_argument(
        "--platform-registry", default="", help="without PLATFORM_REGISTRY (prebuilt)"
    )
    parser.add_argument("--helm", default="helm", help="HELM")
    parser.add_argument("--release", default="", help="HELM_RELEASE")
    parser.add_argument("--namespace", default="", help="HELM_NAMESPACE")
    parser.add_argument("--version", default="", help="the official chart's version")
    args = parser.parse_args(argv)
    if args.action == "values":
        return values(args)
    return install(args, flags)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

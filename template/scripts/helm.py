#!/usr/bin/env python3
"""Write the Helm values of the project's images, and install the release (`make helm-values`,
`make helm-install`, with ui_access=login `make helm-users-secret`, with compute_logs=s3
`make helm-s3-secret`).

    helm.py values --engine podman --project SLUG --local localhost --registry R --tag TAG
        --release SLUG [--ui-host dagster.example.com]
    helm.py install --helm helm --release SLUG --namespace SLUG --version 1.13.27 [-- FLAGS]
    helm.py users-secret --kubectl kubectl --release SLUG --namespace SLUG --file USERS_FILE
    helm.py s3-secret --kubectl kubectl --namespace SLUG --secret SLUG-s3

deploy/helm/values.yaml names the images @REGISTRY@/SLUG-NAME:@IMAGE_TAG@; `values` writes
.build/helm/values.yaml with both filled in: REGISTRY (checked as `make push` checks it,
scripts/push_images.py --check) or, without one, --local (the names `make build` gives the
images, for a cluster whose nodes were loaded with them), and IMAGE_TAG (latest without one,
with a warning). Helm itself cannot fill them in: it merges values files but replaces lists
whole, and the code locations are a list. With ui_access=login the values name the release
(@RELEASE@: the login proxy's objects and the webservers' Services it leads to) and, without a
ui_domain answer, the UI's host name (@UI_HOST@, UI_HOST: required then). `install` runs
`helm upgrade --install` of the official chart with that file and FLAGS (HELM_FLAGS), printing
the command without FLAGS, which may name a secret.

`users-secret` makes (or replaces) the Secret RELEASE-ui-users from the login proxy's users
file (bcrypt hashes, the file compose's proxy reads) with kubectl, the file's content through a
pipe, never on a command line or in the output, and restarts the proxy's Deployment if it is
there (Caddy reads the file when it starts).

`s3-secret` makes (or replaces) the Secret of the step logs' S3 store (compute_logs=s3) from
.env's DAGSTER_S3_* (exported by make): its keys are the environment variables every Dagster
pod gets from it (envSecrets) and the purge's CronJob too. Its manifest goes to `kubectl apply`
through a pipe, never on a command line or in the output. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

SOURCE = Path("deploy/helm/values.yaml")
VALUES = Path(".build/helm/values.yaml")
CHART = ["dagster", "--repo", "https://dagster-io.github.io/helm"]
# A Helm release name (it begins the names of the chart's objects: DNS labels) and a host name.
RELEASE = re.compile(r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?")
LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOST = re.compile(r"(?=.{1,253}\Z)(" + LABEL + r"\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


class Refused(Exception):
    """A setting this script refuses, with the reason."""


def render(
    text: str,
    registry: str,
    tag: str,
    pins: dict[str, str] | None = None,
    release: str = "",
    ui_host: str = "",
) -> str:
    """The values `text` with the images of `registry` and `tag`, (prebuilt platform images)
    `pins`: placeholder -> value, and (ui_access=login) the `release` and the UI's host name."""
    for placeholder, value in (pins or {}).items():
        text = text.replace(placeholder, value)
    if "@RELEASE@" in text and not RELEASE.fullmatch(release):
        raise Refused(
            f"HELM_RELEASE={release[:60]!r} is not a release name: lowercase letters, digits and"
            " '-', at most 53 characters"
        )
    if "@UI_HOST@" in text and not HOST.fullmatch(ui_host):
        raise Refused(
            f"UI_HOST={ui_host[:60]!r}: give the UI's host name, in lowercase, such as"
            " UI_HOST=dagster.example.com (the login proxy's Ingress; docs/kubernetes.md)"
        )
    text = text.replace("@RELEASE@", release).replace("@UI_HOST@", ui_host)
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
    try:
        text = render(
            SOURCE.read_text(), registry, tag, platform_pins(args), args.release, args.ui_host
        )
    except Refused as error:
        print(f"error: make helm-values: {error}", file=sys.stderr)
        return 1
    VALUES.parent.mkdir(parents=True, exist_ok=True)
    partial = VALUES.with_name(VALUES.name + ".partial")
    partial.write_text(text)
    partial.replace(VALUES)
    local = "" if args.registry else " (the local names: no REGISTRY)"
    print(f"wrote {VALUES}; its images: {registry}/{args.project}-NAME:{tag}{local}")
    return 0


def install(args: argparse.Namespace, flags: list[str]) -> int:
    helm = command(args)
    print(shlex.join(helm) + (" HELM_FLAGS (not shown)" if flags else ""), flush=True)
    return subprocess.run([*helm, *flags]).returncode


def users_secret(args: argparse.Namespace) -> int:
    """kubectl apply the Secret RELEASE-ui-users (key users.caddy) made from the users file,
    then restart the proxy's Deployment if it exists."""
    kubectl = [*shlex.split(args.kubectl), "--namespace", args.namespace]
    secret, proxy = f"{args.release}-ui-users", f"deployment/{args.release}-ui-proxy"
    users = Path(args.file)
    if not users.is_file() or not re.search(r"^\s*\S+\s+\$2[aby]\$", users.read_text(), re.M):
        print(
            f"error: make helm-users-secret: {users} has no user: add one first"
            " (make user-add NAME=... ROLE=editor)",
            file=sys.stderr,
        )
        return 1
    make = [*kubectl, "create", "secret", "generic", secret, f"--from-file=users.caddy={users}"]
    make += ["--dry-run=client", "--output=yaml"]
    apply = [*kubectl, "apply", "--filename=-"]
    print(f"{shlex.join(make)} | {shlex.join(apply)}", flush=True)
    made = subprocess.run(make, capture_output=True, text=True)
    if made.returncode:
        sys.stderr.write(made.stderr)
        return made.returncode
    applied = subprocess.run(apply, input=made.stdout, text=True)
    if applied.returncode:
        return applied.returncode
    there = subprocess.run([*kubectl, "get", proxy], capture_output=True, text=True)
    if there.returncode:
        print(f"({proxy} is not there yet: make helm-install starts it with these users)")
        return 0
    restart = [*kubectl, "rollout", "restart", proxy]
    print(shlex.join(restart), flush=True)
    return subprocess.run(restart).returncode


# The S3 Secret's keys (the pods' environment) and the .env setting of each, with its default.
S3_KEYS = {
    "DAGSTER_S3_ENDPOINT_URL": ("DAGSTER_S3_ENDPOINT_URL", None),
    "DAGSTER_S3_BUCKET": ("DAGSTER_S3_BUCKET", None),
    "DAGSTER_S3_PREFIX": ("DAGSTER_S3_PREFIX", "dagster/compute-logs"),
    "AWS_DEFAULT_REGION": ("DAGSTER_S3_REGION", "us-east-1"),
    "AWS_ACCESS_KEY_ID": ("DAGSTER_S3_ACCESS_KEY_ID", None),
    "AWS_SECRET_ACCESS_KEY": ("DAGSTER_S3_SECRET_ACCESS_KEY", None),
}


def s3_secret_manifest(name: str, env: dict[str, str]) -> str:
    """The Secret `name` (JSON, which kubectl reads as YAML) from the settings in `env`;
    SystemExit naming the settings that are empty."""
    missing = [name for name, default in S3_KEYS.values() if not env.get(name) and default is None]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)} empty (.env): the step logs' S3 store")
    data = {
        key: base64.b64encode((env.get(setting) or default).encode()).decode()
        for key, (setting, default) in S3_KEYS.items()
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name},
        "data": data,
    }
    return json.dumps(secret)


def s3_secret(args: argparse.Namespace) -> int:
    """kubectl apply the Secret args.secret made from .env's DAGSTER_S3_* settings."""
    manifest = s3_secret_manifest(args.secret, dict(os.environ))
    apply = [*shlex.split(args.kubectl), "--namespace", args.namespace, "apply", "--filename=-"]
    print(f"{shlex.join(apply)} < (the Secret {args.secret}: {', '.join(S3_KEYS)})", flush=True)
    return subprocess.run(apply, input=manifest, text=True).returncode


def main(argv: list[str]) -> int:
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["values", "install", "users-secret", "s3-secret"])
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
    parser.add_argument("--ui-host", default="", help="UI_HOST (ui_access=login)")
    parser.add_argument("--kubectl", default="kubectl", help="KUBECTL")
    parser.add_argument("--file", default="", help="the login proxy's users file")
    parser.add_argument("--secret", default="", help="the S3 Secret's name (s3-secret)")
    args = parser.parse_args(argv)
    if args.action == "values":
        return values(args)
    if args.action == "users-secret":
        return users_secret(args)
    if args.action == "s3-secret":
        return s3_secret(args)
    return install(args, flags)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

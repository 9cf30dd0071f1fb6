#!/usr/bin/env python3
"""Create the project's local, uncommitted files: .env and secrets/pip.conf.

    python3 scripts/init_env.py [--project SLUG]

.env is copied from .env.example with placeholder secrets replaced by random values, and the
project network's DAGSTER_NETWORK_PREFIX moved to a free /24 if its default is taken (by a
network of Podman or Docker other than this project's, SLUG_dagster, or by a route of this
host); secrets/pip.conf is the (commented-out) pip configuration that image builds mount as a
build secret. Run by `make` when either is missing; never overwrites an existing file.
"""

import argparse
import ipaddress
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from check_network import network_subnets

PLACEHOLDER = "change-me"
NETWORK_KEY = "DAGSTER_NETWORK_PREFIX"

PIP_CONF = """\
# pip settings used by the image builds ONLY, mounted as a build secret for the
# `pip install` step: they never reach an image layer, the image history or the
# answers file. This file is not committed (.gitignore). Uncomment to install from a
# private index or a mirror, e.g.:
#
# [global]
# index-url = https://USER:TOKEN@pypi.example.internal/simple
# extra-index-url = https://pypi.org/simple
"""


def write_private(path: Path, text: str) -> None:
    """Create path readable by its owner only, then fill it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)


def engine_networks(own: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets of every Podman and Docker network here but `own` (engines that are not
    installed or not running count for none)."""
    found = []
    for engine in ("podman", "docker"):
        if not shutil.which(engine):
            continue
        try:
            ids = subprocess.run(
                [engine, "network", "ls", "-q"], capture_output=True, text=True, timeout=20
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            continue
        for name, subnets in network_subnets(engine, ids).items():
            if name != own:
                found += subnets
    return found


def host_routes() -> list[ipaddress.IPv4Network]:
    """This host's IPv4 routes (Linux), but the default route and routes broader than a /16
    (a VPN's 10.0.0.0/8, say): a /24 of the project's own takes precedence over those."""
    routes = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        destination = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = bin(int(fields[7], 16)).count("1")
        if mask >= 16:
            routes.append(ipaddress.ip_network(f"{destination}/{mask}", strict=False))
    return routes


def free_prefix(default: str, own: str) -> str:
    """`default` (a.b.c) if a.b.c.0/24 is free here, else the next free one, the third number
    first, then the second within 192-255; `default` itself if none is free."""
    taken = engine_networks(own) + host_routes()
    first, second, third = (int(part) for part in default.split("."))
    for step in range(64 * 256):
        number = (second - 192) * 256 + third + step
        candidate = f"{first}.{192 + (number // 256) % 64}.{number % 256}"
        subnet = ipaddress.ip_network(f"{candidate}.0/24")
        if not any(subnet.overlaps(used) for used in taken):
            return candidate
    return default


def create_env(root: Path, project: str | None) -> None:
    target, example = root / ".env", root / ".env.example"
    if target.exists():
        return
    lines = []
    for line in example.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and value == PLACEHOLDER:
            line = f"{key}={secrets.token_urlsafe(24)}"
        elif sep and key == NETWORK_KEY and project:
            chosen = free_prefix(value, f"{project}_dagster")
            if chosen != value:
                print(f"{value}.0/24 is in use here: the project network takes {chosen}.0/24")
            line = f"{key}={chosen}"
        lines.append(line)
    write_private(target, "\n".join(lines) + "\n")
    print(f"created {target.name} from {example.name} (secrets generated; keep it out of git)")


def create_pip_conf(root: Path) -> None:
    target = root / "secrets" / "pip.conf"
    if target.exists():
        return
    write_private(target, PIP_CONF)
    print("created secrets/pip.conf (build-time pip settings, e.g. a private index; not committed)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", help="the project's slug (its network is SLUG_dagster)")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    create_env(root, args.project)
    create_pip_conf(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Refuse to start on a project network whose subnet is not the project's (`make up` runs this).

    python3 scripts/check_network.py --engine podman --network SLUG_dagster --prefix 10.202.143

The services have fixed addresses in DAGSTER_NETWORK_PREFIX.0/24 (.env). A network of that name
made before (by an earlier version of the project, which had no fixed addresses, or with another
prefix) is reused as it is by the compose tools and `podman kube play`, and the containers then
fail to start with the engine's words about an address. This says what to do instead: `make
down` (or `make kube-down`) removes the network, and the next start makes it anew. A missing
network is fine (it is made at start).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys


def network_subnets(engine: str, names: list[str]) -> dict[str, list[ipaddress.IPv4Network]]:
    """The IPv4 subnets of each named (or ID'd) network of `engine`, by name (Podman's and
    Docker's `network inspect` JSON). A network that does not exist is left out; an engine that
    is not installed or does not answer has none."""
    if not names:
        return {}
    try:
        done = subprocess.run(
            [engine, "network", "inspect", *names], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    try:
        listed = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        listed = []
    found = {}
    for network in listed or []:
        name = network.get("name") or network.get("Name")
        configs = network.get("subnets") or (network.get("IPAM") or {}).get("Config") or []
        found[name] = []
        for config in configs:
            try:
                written = config.get("subnet") or config.get("Subnet")
                subnet = ipaddress.ip_network(written, strict=False)
            except (TypeError, ValueError):
                continue
            if subnet.version == 4:
                found[name].append(subnet)
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--network", required=True)
    parser.add_argument("--prefix", required=True, help="DAGSTER_NETWORK_PREFIX, e.g. 10.202.143")
    parser.add_argument("--down", default="make down", help="the command that removes it")
    args = parser.parse_args(argv)
    found = network_subnets(args.engine, [args.network]).get(args.network)
    wanted = ipaddress.ip_network(f"{args.prefix}.0/24")
    if found is None or wanted in found:
        return 0
    print(
        f"error: the network {args.network} exists with the subnet "
        f"{', '.join(map(str, found)) or 'none'}, "
        f"but this project's services have fixed addresses in {wanted} (DAGSTER_NETWORK_PREFIX "
        f"in .env). Run '{args.down}' (it removes the network; volumes and data stay), then start "
        "again.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

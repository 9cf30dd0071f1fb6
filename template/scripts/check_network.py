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
import json
import subprocess
import sys


def subnets(engine: str, network: str) -> list[str] | None:
    """The network's IPv4 subnets, or None when it does not exist."""
    done = subprocess.run([engine, "network", "inspect", network], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    found = []
    for item in json.loads(done.stdout or "[]"):
        for config in item.get("subnets") or (item.get("IPAM") or {}).get("Config") or []:
            subnet = config.get("subnet") or config.get("Subnet")
            if subnet and ":" not in subnet:
                found.append(subnet)
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--network", required=True)
    parser.add_argument("--prefix", required=True, help="DAGSTER_NETWORK_PREFIX, e.g. 10.202.143")
    parser.add_argument("--down", default="make down", help="the command that removes it")
    args = parser.parse_args(argv)
    found = subnets(args.engine, args.network)
    wanted = f"{args.prefix}.0/24"
    if found is None or wanted in found:
        return 0
    print(
        f"error: the network {args.network} exists with the subnet {', '.join(found) or 'none'}, "
        f"but this project's services have fixed addresses in {wanted} (DAGSTER_NETWORK_PREFIX "
        f"in .env). Run '{args.down}' (it removes the network; volumes and data stay), then start "
        "again.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

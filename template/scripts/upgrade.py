#!/usr/bin/env python3
"""Upgrade the running stack to its freshly built images (`make upgrade`), or migrate the
instance alone (`make migrate`).

    upgrade.py upgrade --engine podman --compose podman-compose --project SLUG --tag TAG \\
        --image NAME... --service pipes-NAME... --backup "make backup" [--drain-seconds 120]
    upgrade.py migrate --engine podman --compose podman-compose --project SLUG \\
        --service pipes-NAME...

make builds the images first (`make build`: nothing running changes). `upgrade` then:

1. compares each service's container with its image (localhost/SLUG-NAME:TAG) and asks the
   instance (`dagster instance info` in the daemon's container) whether its schema is behind.
   Same images and no schema behind: it says there is nothing to do and changes nothing.
2. tags the image each container runs now localhost/SLUG-NAME:pre-upgrade, so that a rollback
   can start the previous version without building it (`make restore ... ROLLBACK=yes`).
3. stops the daemon (no more launches, ticks or sensors; queued runs stay queued), then waits
   up to --drain-seconds for the runs in progress to finish. Those still running then are
   stopped with their code location's container and marked failed when it starts again
   (launchpad_pipes.recover_runs): it says how many. Then it stops the webserver and the code
   locations.
4. backs up (--backup: the project's own `make backup`; with an external PostgreSQL, the
   server's backup that the user confirmed with BACKED_UP=yes), with every Dagster service
   stopped, so the backup is the state the migration starts from.
5. runs `dagster instance migrate` once, in a one-off container of the daemon's new image
   with the instance's config and storage as the services see them (`COMPOSE run`).
6. starts the stack on the new images (`make up`'s step: --start) and waits until it is ready.
7. prints the Dagster version before and after (the images' io.dagster.version labels), the
   schema revisions before and after, and what the migration applied.

If the migration fails it stops there, leaves the stack stopped and prints the command that
brings the previous version back (--rollback, with the backup's file). `migrate` is steps 3
(without waiting) and 5 alone: the stack is left stopped.

--kube (`make kube-upgrade`, Podman): the same steps for the kube stack (KubeStack): the pods'
containers SLUG-NAME-NAME compared, the pods stopped (`podman pod stop`), then the stack down
(--down: `make kube-down`, the claims stay) before the backup (--backup: `make kube-backup`, a
copy of the claims) and the migration (--migrate: `make kube-migrate`, a one-off pod of the
daemon's new image played from the same YAML); --start is `make kube-up`. With the Quadlet
unit installed it refuses and says the steps (systemd owns the pods). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

PRE_UPGRADE = "pre-upgrade"
# The runs in progress, counted inside a container with Dagster (the webserver's), every
# second until none is left or the deadline passes; prints the count each time it changes.
DRAIN = """
import sys, time
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
deadline = time.monotonic() + float(sys.argv[1])
busy = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
last = None
with DagsterInstance.get() as instance:
    while True:
        count = instance.get_runs_count(RunsFilter(statuses=busy))
        if count != last:
            print(count, flush=True)
            last = count
        if count == 0 or time.monotonic() >= deadline:
            break
        time.sleep(1)
"""
REVISION = re.compile(r"^\s+(current|latest): (\S+)", re.M)
DATA_MIGRATION = re.compile(r"^Finished data migration: (\S+)", re.M)
BACKUP_FILE = re.compile(r"^backup written: (\S+)", re.M)


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, **kwargs)


def shown(command: list[str]) -> list[str]:
    print(shlex.join(command), flush=True)
    return command


def inspect(engine: str, kind: str, name: str) -> dict | None:
    done = run(engine, kind, "inspect", name, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    found = json.loads(done.stdout or "[]")
    return found[0] if found else None


def bare(image_id: str | None) -> str:
    """An image ID without its algorithm (Docker says sha256:..., Podman does not)."""
    return (image_id or "").removeprefix("sha256:")


def label(image: dict | None) -> str:
    """The Dagster version an image was built with (its io.dagster.version label)."""
    config = (image or {}).get("Config") or {}
    labels = config.get("Labels") or (image or {}).get("Labels") or {}
    return labels.get("io.dagster.version", "unknown")


def schema(text: str) -> list[tuple[str, str]]:
    """The (current, latest) revision pairs of `dagster instance info`/`migrate` output."""
    found = REVISION.findall(text)
    return [
        (found[i][1], found[i + 1][1])
        for i in range(0, len(found) - 1)
        if found[i][0] == "current" and found[i + 1][0] == "latest"
    ]


def behind(pairs: list[tuple[str, str]]) -> bool:
    return any(current != latest for current, latest in pairs)


def applied(output: str) -> str:
    """What `dagster instance migrate` applied, from its output: the schema before and after,
    and the data migrations it finished."""
    before, _, after = output.partition("Storage schema state after migration")
    old, new = schema(before), schema(after)
    data = DATA_MIGRATION.findall(output)
    done = f"data migrations: {', '.join(data)}" if data else "no data migration"
    if not old or not new:
        return f"schema unknown (see the migration's output above); {done}"
    if old == new:
        revision = sorted({current for current, _ in new})
        return f"no schema change (revision {', '.join(revision)}); {done}"
    moves = sorted({f"{a[0]} -> {b[0]}" for a, b in zip(old, new, strict=False) if a != b})
    return f"schema {'; '.join(moves)}; {done}"


class Stack:
    """The compose stack: a service's container is SLUG-SERVICE."""

    up, upgrade, migrate_target = "make up", "make upgrade", "make migrate"

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.compose = shlex.split(args.compose)

    def refusal(self) -> str:
        """Why this stack cannot be upgraded here ("" if it can)."""
        return ""

    def stopped(self) -> int:
        """What follows the Dagster services' stop, before the backup (compose: nothing)."""
        return 0

    def container(self, service: str) -> str:
        return f"{self.args.project}-{service}"

    def image(self, service: str, tag: str | None = None) -> str:
        """The service's image: as built (localhost/SLUG-NAME:TAG), another tag of it, or the
        reference given with --image NAME=REF (the pulled platform images)."""
        if not tag and service in self.args.refs:
            return self.args.refs[service]
        return f"localhost/{self.args.project}-{service}:{tag or self.args.tag}"

    def stop(self, *services: str, seconds: int = 30) -> int:
        return run(*shown([*self.compose, "stop", "-t", str(seconds), *services])).returncode

    def drain(self, seconds: int) -> int:
        """Wait for the runs in progress (at most `seconds`); returns how many are left."""
        command = [self.args.engine, "exec", "-i", self.container("webserver")]
        done = run(
            *command, "python3", "-", str(seconds), input=DRAIN, capture_output=True, text=True
        )
        counts = [int(line) for line in done.stdout.split() if line.isdigit()]
        if done.returncode or not counts:
            print(f"warning: could not count the runs in progress: {done.stderr.strip()[-300:]}")
            return 0
        return counts[-1]

    def migrate(self) -> tuple[int, str]:
        """`dagster instance migrate` once, in a one-off container of the daemon's image."""
        command = [
            *self.compose, "run", "--rm", "--no-deps", "-T", "daemon",
            "python3", "/opt/dagster/instance_ready.py", "--", "dagster", "instance", "migrate",
        ]  # fmt: skip
        return captured(command)


class KubeStack(Stack):
    """The kube stack (`make kube-upgrade`): one pod SLUG-SERVICE per service, its container
    SLUG-SERVICE-SERVICE. The Dagster pods stop with `podman pod stop`, then the whole stack
    goes (--down: `make kube-down`, the claims stay), so that the backup (--backup: `make
    kube-backup`, a copy of the claims) and the migration (--migrate: `make kube-migrate`, a
    one-off pod of the daemon's new image beside the PostgreSQL pod, from the same YAML) see
    nothing else write. Under Quadlet systemd owns the pods: refused, with the steps."""

    up, upgrade, migrate_target = "make kube-up", "make kube-upgrade", "make kube-migrate"

    def container(self, service: str) -> str:
        return f"{self.args.project}-{service}-{service}"

    def refusal(self) -> str:
        slug = self.args.project
        config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        units = {"": "/etc/containers/systemd", " --user": f"{config}/containers/systemd"}
        for scope, directory in units.items():
            if os.path.exists(f"{directory}/{slug}.kube"):
                return (
                    f"the Quadlet unit {directory}/{slug}.kube is installed: systemd runs this"
                    " stack and make kube-upgrade does not drive systemd. Upgrade it with:"
                    f" systemctl{scope} stop {slug} && make build kube-backup kube-migrate"
                    f" quadlet-install && systemctl{scope} start {slug} (docs/upgrade.md)"
                )
        return ""

    def stop(self, *services: str, seconds: int = 30) -> int:
        pods = [f"{self.args.project}-{service}" for service in services]
        command = [self.args.engine, "pod", "stop", "-t", str(seconds), *pods]
        return run(*shown(command)).returncode

    def stopped(self) -> int:
        return run(*shlex.split(self.args.down)).returncode

    def migrate(self) -> tuple[int, str]:
        return captured(shlex.split(self.args.migrate))


def captured(command: list[str]) -> tuple[int, str]:
    """Run `command` (shown), print its output and return its code and output."""
    done = run(*shown(command), capture_output=True, text=True)
    output = done.stdout + done.stderr
    print(output.rstrip(), flush=True)
    return done.returncode, output


def dagster_services(args: argparse.Namespace) -> list[str]:
    return ["daemon", *args.web, *args.service]


def migrate(args: argparse.Namespace) -> int:
    stack = Stack(args)
    if stack.stop(*dagster_services(args)):
        return 1
    code, output = stack.migrate()
    if code:
        print("error: the migration failed (its output is above)", file=sys.stderr)
        return code
    print(f"migrations applied: {applied(output)}")
    print("The Dagster services are stopped: start them with 'make up'.")
    return 0


def upgrade(args: argparse.Namespace) -> int:
    stack = KubeStack(args) if args.kube else Stack(args)
    engine = args.engine
    if refused := stack.refusal():
        print(f"error: {refused}", file=sys.stderr)
        return 1
    before, after, changed = {}, {}, []
    for service in args.image:
        container = inspect(engine, "container", stack.container(service))
        image = inspect(engine, "image", stack.image(service))
        if container is None:
            print(
                f"error: {service} has no container: '{stack.upgrade}' upgrades a stack that"
                f" was started with the previous version ('{stack.up}' before 'copier update')."
                f" To start this version on the old data instead: '{stack.migrate_target}',"
                f" then '{stack.up}'.",
                file=sys.stderr,
            )
            return 1
        if image is None:
            print(f"error: no image {stack.image(service)}: 'make build' first", file=sys.stderr)
            return 1
        before[service] = inspect(engine, "image", container["Image"])
        after[service] = image
        if bare(container["Image"]) != bare(image["Id"]):
            changed.append(service)
    info = run(
        engine, "exec", stack.container("daemon"), "dagster", "instance", "info",
        capture_output=True, text=True,
    )  # fmt: skip
    pending = behind(schema(info.stdout))
    old = label(before.get("daemon") or next(iter(before.values()), None))
    new = label(after.get("daemon") or next(iter(after.values()), None))
    if not changed and not pending:
        print(
            f"Nothing to upgrade: every container runs its image as built (Dagster {new}) and"
            " the instance's schema is current. Nothing was changed."
        )
        return 0
    print(f"upgrading: Dagster {old} -> {new}; rebuilt images: {', '.join(changed) or 'none'};"
          f" schema behind: {'yes' if pending else 'no'}", flush=True)  # fmt: skip
    for service in args.image:
        previous = stack.image(service, PRE_UPGRADE)
        if run(*shown([engine, "tag", before[service]["Id"], previous])).returncode:
            return 1
    started = time.monotonic()
    if stack.stop("daemon"):
        return 1
    left = stack.drain(args.drain_seconds)
    if left:
        fate = (
            "they go on in their own containers (the container run launcher)"
            if args.own_containers
            else "they stop with their code location now and are marked failed when it starts"
            " again (a run retry policy runs them again)"
        )
        print(f"{left} run(s) still in progress after {args.drain_seconds} s: {fate};"
              " queued runs stay queued.")  # fmt: skip
    else:
        print("no run in progress: queued runs stay queued and start after the upgrade")
    if stack.stop(*args.web, *args.service) or stack.stopped():
        return 1
    done = run(*shlex.split(args.backup), capture_output=True, text=True)
    print((done.stdout + done.stderr).rstrip(), flush=True)
    if done.returncode:
        print("error: the backup failed; nothing was migrated. The Dagster services are"
              f" stopped: start the previous version again with '{stack.up} ROLLBACK=yes"
              f" IMAGE_TAG={PRE_UPGRADE}', or fix the backup and run '{stack.upgrade}'"
              " again.", file=sys.stderr)  # fmt: skip
        return 1
    file = (BACKUP_FILE.findall(done.stdout) or ["<your server's backup>"])[-1]
    code, output = stack.migrate()
    rollback = args.rollback.replace("@FILE@", file)
    if code:
        print(
            "error: the migration failed (its output is above). The Dagster services are"
            f" stopped, and the storage may be partly migrated; {file} holds it as it was"
            f" before. To bring back the previous version (Dagster {old}) on that backup:"
            f"\n  {rollback}\n"
            f"then revert the project's update (git) before the next '{stack.up}'; see"
            " docs/upgrade.md.",
            file=sys.stderr,
        )
        return code
    if run(*shlex.split(args.start)).returncode:
        print(f"error: the stack did not become ready on the new images; to go back:"
              f"\n  {rollback}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"upgraded: Dagster {old} -> {new} (the images' labels); downtime"
          f" {time.monotonic() - started:.0f} s; backup: {file}")  # fmt: skip
    print(f"migrations applied: {applied(output)}")
    print(f"previous images kept as :{PRE_UPGRADE}: {', '.join(args.image)}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["upgrade", "migrate"])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--compose", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--image", action="append", default=[], help="NAME or NAME=REF")
    parser.add_argument("--service", action="append", default=[], help="a code location's")
    parser.add_argument("--web", action="append", default=[], help="a webserver service")
    parser.add_argument("--backup", default="", help="the backup's command (upgrade)")
    parser.add_argument("--start", default="", help="the command that starts the stack")
    parser.add_argument("--rollback", default="", help="the rollback's command, @FILE@ the backup")
    parser.add_argument("--drain-seconds", type=int, default=120)
    parser.add_argument("--kube", action="store_true", help="the kube stack (make kube-upgrade)")
    parser.add_argument("--down", default="", help="the kube stack's stop (--kube)")
    parser.add_argument("--migrate", default="", help="the kube stack's migration (--kube)")
    parser.add_argument(
        "--own-containers", action="store_true", help="runs execute in containers of their own"
    )
    args = parser.parse_args(argv)
    args.web = args.web or ["webserver"]
    args.refs = dict(given.split("=", 1) for given in args.image if "=" in given)
    args.image = [given.split("=", 1)[0] for given in args.image]
    return upgrade(args) if args.action == "upgrade" else migrate(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

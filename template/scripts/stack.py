#!/usr/bin/env python3
"""Build, start, reload, recycle and remove the compose stack (`make build`, `up`, `reload`,
`recycle`, `clean`).

    stack.py build --engine podman --project SLUG --tag TAG --pull IMAGE... --image NAME...
    stack.py up --engine podman --compose podman-compose --project SLUG --tag TAG \
        --url http://127.0.0.1:3000 --prefix 10.217.193 --image NAME... --location NAME:SERVICE...
    stack.py reload --engine podman --compose podman-compose --project SLUG --url URL \
        --serving "COMMAND" --location NAME:SERVICE... [--reload NAME]...

build: warns about the directories of pipes/ that are no code location (--orphan), pulls the
base images that the local store lacks (scripts/ensure_images.sh), and drops the stamp
.build/NAME of each image missing from the store (of every image with --rebuild, which
`make build` gives with BUILD_FLAGS), so that make builds it again; make then builds the
images whose inputs changed.

up, once make has built the images (and written the password file): with the container run
launcher, checks the engine API socket and the RUN_* ceilings (.env); checks the project
network (scripts/check_network.py); with an external PostgreSQL, copies its CA
(scripts/postgres_tls.py); recreates the containers of rebuilt images
(scripts/stale_services.py); starts the stack (`COMPOSE up -d`) and waits until the UI and every
code location are ready (scripts/wait_ready.py). If they are not, it shows the services'
state, the lines of each log that name an error (scripts/log_errors.py) and, when PostgreSQL
refused the password, what to do.

reload (code delivery "image"): recreates the containers of the code locations (--reload
NAME..., every one without), waits until each serves (--serving, inside its container) and
reloads them in the UI.

recycle restarts the UI and the daemon only: their memory grows slowly over many runs
(docs/benchmarks.md in the template's repository; dagster-io/dagster #32070), and a restart
gives it back. No run is lost: runs execute in the code locations' containers, which keep
running; queued runs wait in the database. The daemon first, while nothing else restarts (the
services find each other in /etc/hosts, so a container that rejoins the network stalls no name
lookup; before, Podman 4.3's DNS server missed names for 20-40 s then). It finishes the
launches it is in (seconds) and stops; after --stop-seconds (RECYCLE_STOP_SECONDS) the engine
kills it, and a run it was launching is failed by run monitoring (start_timeout_seconds) and
run again only by a retry policy. Safe from cron or a systemd timer.

clean removes the containers and the volumes (the run history), with --confirm yes only.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import locations

SCRIPTS = Path(__file__).resolve().parent
# The UI as the webserver's own container reaches it (stack.py --inside).
LOCAL_UI = "http://127.0.0.1:3000"
CPUS = re.compile(r"[0-9]*[.]?[0-9]+")
MEMORY = re.compile(r"[0-9]+[kmg]?")
PIDS = re.compile(r"[1-9][0-9]*")
HINTS = {
    "bundled": (
        "hint: PostgreSQL refuses DAGSTER_PG_PASSWORD from .env. The volume {project}_postgres-data"
        " keeps the database of an earlier project with this name and another password: put"
        " that password back in .env, or delete the old data with 'make clean CONFIRM=yes'."
    ),
    "external": (
        "hint: the database refuses DAGSTER_PG_USER / DAGSTER_PG_PASSWORD from .env: check them"
        " against the server."
    ),
}


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, **kwargs)


def script(name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Another script of scripts/, with this Python."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], **kwargs)


def wait_ready(args: argparse.Namespace, *wait: str) -> int:
    """scripts/wait_ready.py for the UI at args.url; with --inside (the login proxy in front),
    run in that container (the webserver's, whose port the host does not reach) against its
    own port, with this Python's copy of the script on its standard input."""
    if not args.inside:
        return script("wait_ready.py", "--url", args.url, *wait).returncode
    inside = [args.engine, "exec", "-i", args.inside, "python3", "-", "--url", LOCAL_UI]
    with open(SCRIPTS / "wait_ready.py", "rb") as source:
        return run(*inside, "--shown-url", args.url, *wait, stdin=source).returncode


def proxy_ready(url: str, container: str, seconds: float = 60) -> bool:
    """Whether the login proxy answers at `url` within `seconds`: any HTTP answer (401 without
    a login) counts. Its certificate is not checked here (its own CA, in its volume)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=5, context=context).close()
            return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() >= deadline:
                print(f"error: the login proxy ({container}) did not answer at {url}: {exc}",
                      file=sys.stderr)  # fmt: skip
                return False
        time.sleep(0.5)


def shown(command: list[str]) -> list[str]:
    """`command`, printed first as make prints a recipe line."""
    print(shlex.join(command), flush=True)
    return command


def run_limits(cpus: str, memory: str, pids: str) -> str | None:
    """None when the RUN_* ceilings of .env are valid, else the error."""
    if not CPUS.fullmatch(cpus) or float(cpus) <= 0:
        return f"RUN_CPUS (.env) is not a positive number of CPUs: '{cpus.replace(chr(39), '')}'"
    if not MEMORY.fullmatch(memory):
        return "RUN_MEMORY_LIMIT (.env) is not an amount of memory such as 512m or 2g"
    if not PIDS.fullmatch(pids):
        return "RUN_PIDS_LIMIT (.env) is not a positive whole number of processes"
    return None


def given(defaults: str, env: dict[str, str]) -> list[str]:
    """RUN_CPUS, RUN_MEMORY_LIMIT and RUN_PIDS_LIMIT from `env`, each unset or empty one
    from `defaults` (the template's, comma-separated)."""
    names = ("RUN_CPUS", "RUN_MEMORY_LIMIT", "RUN_PIDS_LIMIT")
    return [
        env.get(name) or default for name, default in zip(names, defaults.split(","), strict=True)
    ]


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(Path(path).stat().st_mode)
    except OSError:
        return False


def wait_for(engine: str, container: str, command: list[str], service: str) -> bool:
    """Poll `command` inside `container` every 0.5 s, 180 s at most (real readiness: Podman 4.3
    runs no health checks, so compose cannot wait on them); False after an error line."""
    for _ in range(360):
        done = run(engine, "exec", container, *command, capture_output=True)
        if done.returncode == 0:
            return True
        time.sleep(0.5)
    print(
        f"error: {service} was not ready within 180 s; see 'make logs SERVICE={service}'",
        file=sys.stderr,
    )
    return False


def report(state: list[str], logs, services: list[str], whole: str) -> None:
    """Why a stack is not ready: `state`'s output, then for each service the lines of its log
    (the command `logs(service)`) that name an error; `whole` says where the whole logs are."""
    run(*state, stdout=sys.stderr)
    for service in services:
        print(f"the lines of {service}'s log that name an error:", file=sys.stderr, flush=True)
        log = run(*logs(service), capture_output=True)
        found = script("log_errors.py", input=log.stdout + log.stderr, stdout=sys.stderr)
        if found.returncode:
            print("  none", file=sys.stderr)
    print(whole, file=sys.stderr)


def password_hint(log: str, postgres: str, project: str) -> str | None:
    """What to do when PostgreSQL refused the password (the webserver's log `log` says so)."""
    if "password authentication failed" in log and postgres in HINTS:
        return HINTS[postgres].format(project=project)
    return None


def build(args: argparse.Namespace) -> int:
    locations.warn_orphans(args.orphan)
    pulled = [image for image in args.pull if image]
    if run("sh", str(SCRIPTS / "ensure_images.sh"), args.engine, *pulled).returncode:
        return 1
    Path(".build").mkdir(exist_ok=True)
    for image in args.image:
        reference = f"localhost/{args.project}-{image}:{args.tag}"
        if (
            args.rebuild
            or run(args.engine, "image", "inspect", reference, capture_output=True).returncode
        ):
            Path(".build", image).unlink(missing_ok=True)
    return 0


def up(args: argparse.Namespace) -> int:
    if args.socket is not None and not is_socket(args.socket):
        print(
            f"error: no engine API socket at {args.socket} (the container run launcher needs it).",
            file=sys.stderr,
        )
        print(args.socket_hint, file=sys.stderr)
        return 1
    network = ["--network", f"{args.project}_dagster", "--prefix", args.prefix]
    if script("check_network.py", "--engine", args.engine, *network).returncode:
        return 1
    if args.run_limits and (error := run_limits(*given(args.run_limits, os.environ))):
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.postgres == "external" and script("postgres_tls.py", ".build/postgres-tls").returncode:
        return 1
    compose = shlex.split(args.compose)
    stale = script(
        "stale_services.py", "--engine", args.engine, "--project", args.project, "--tag", args.tag,
        *args.image, *args.image_of, stdout=subprocess.PIPE, text=True,
    ).stdout.split()  # fmt: skip
    if stale:
        print(f"recreating the containers of rebuilt images: {' '.join(stale)}", flush=True)
        if run(*compose, "up", "-d", "--force-recreate", "--no-deps", *stale).returncode:
            return 1
    if done := run(*shown([*compose, "up", "-d"])).returncode:
        return done
    names = locations.pairs(args.location)
    if wait_ready(args, *(f"--location={n}" for n in names)) or (
        args.proxy and not proxy_ready(args.url, args.proxy)
    ):
        report(
            [*compose, "ps"],
            lambda service: [*compose, "logs", "--tail", "2000", service],
            [*args.web, "daemon", *names.values(), *(["proxy"] if args.proxy else [])],
            "the state and the errors of each log are above; whole logs: 'make logs SERVICE=...'",
        )
        log = run(*compose, "logs", "webserver", capture_output=True, text=True)
        if hint := password_hint(log.stdout + log.stderr, args.postgres, args.project):
            print(hint, file=sys.stderr)
        return 1
    return 0


def reload(args: argparse.Namespace) -> int:
    names = locations.pairs(args.location)
    chosen = args.reload or list(names)
    services = [names[name] for name in chosen]
    compose = shlex.split(args.compose)
    if done := run(
        *shown([*compose, "up", "-d", "--force-recreate", "--no-deps", *services])
    ).returncode:
        return done
    serving = shlex.split(args.serving)
    for service in services:
        if not wait_for(args.engine, f"{args.project}-{service}", serving, service):
            return 1
    return wait_ready(args, *(f"--location={name}" for name in chosen), "--reload")


def recycle(args: argparse.Namespace) -> int:
    compose = shlex.split(args.compose)
    for service in ("daemon", *args.web):
        restart = [*compose, "restart", "-t", str(args.stop_seconds), service]
        if done := run(*shown(restart)).returncode:
            return done
    return wait_ready(args, *(f"--location={n}" for n in locations.pairs(args.location)))


def clean(args: argparse.Namespace) -> int:
    if args.confirm != "yes":
        print(
            f"This deletes every volume of {args.project}, run history included."
            " Run: make clean CONFIRM=yes",
            file=sys.stderr,
        )
        return 1
    return run(*shown([*shlex.split(args.compose), "down", "-v"])).returncode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["build", "up", "reload", "recycle", "clean"])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--compose", default="")
    parser.add_argument("--project", required=True)
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--url", default="", help="the UI's address")
    parser.add_argument("--prefix", default="", help="DAGSTER_NETWORK_PREFIX")
    parser.add_argument("--image", action="append", default=[], help="an image's service name")
    parser.add_argument("--location", action="append", default=[], metavar="NAME:SERVICE")
    parser.add_argument("--orphan", action="append", default=[], help="a directory of pipes/")
    parser.add_argument("--pull", action="append", default=[], help="a base image (build)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild every image (build)")
    parser.add_argument("--socket", help="the engine API socket the run launcher needs (up)")
    parser.add_argument("--socket-hint", default="", help="how to start it (up)")
    parser.add_argument(
        "--run-limits", default="", help="RUN_CPUS,RUN_MEMORY_LIMIT,RUN_PIDS_LIMIT defaults (up)"
    )
    parser.add_argument("--postgres", choices=["bundled", "external", "none"], default="none")
    parser.add_argument("--reload", action="append", default=[], help="a location (reload)")
    parser.add_argument("--serving", default="", help="the command that says a location serves")
    parser.add_argument("--stop-seconds", type=int, default=60, help="before a kill (recycle)")
    parser.add_argument("--confirm", default="", help="CONFIRM (clean)")
    parser.add_argument("--inside", default="", help="wait for the UI in this container")
    parser.add_argument(
        "--web", action="append", default=[], help="a webserver service (recycle; default one)"
    )
    parser.add_argument(
        "--image-of", action="append", default=[], metavar="SERVICE:IMAGE",
        help="a service that runs another's image (up: recreated when it was rebuilt)",
    )  # fmt: skip
    parser.add_argument("--proxy", default="", help="the login proxy's container (up waits)")
    args = parser.parse_args(argv)
    args.web = args.web or ["webserver"]
    actions = {"build": build, "up": up, "reload": reload, "recycle": recycle, "clean": clean}
    return actions[args.action](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Secrets tier: .env values reach every container exactly, no secret is on a command line,
an external PostgreSQL is reached over verified TLS, and each run's own container has its
ceilings (issue 29, findings 4, 6, 10 and 2).

- make reads .env through scripts/env_make.py: the values a user writes (quotes, '#', '$',
  spaces, backslashes) reach the recipes' environment exactly as .env means them, checked here
  with real make and, per engine, end to end: a password made of those characters opens a
  real PostgreSQL, the bundled one (on Podman under compose and as the kube stack) and an
  external one.
- While `make up` starts the stack, no process on this host (as ps shows them to every local
  user) has the password on its command line (podman-compose would put `-e NAME=value` on
  `podman create`'s): the containers read it from compose's secret file, and no container's
  configuration holds it.
- The external PostgreSQL of this tier serves TLS only (pg_hba: hostssl, hostnossl rejected),
  with a certificate of a CA made here; the project has DAGSTER_PG_SSLMODE=verify-full and
  the CA in DAGSTER_PG_SSLROOTCERT, so the webserver, the daemon, the code location and (with
  the container launcher) the run's own container check the server before they log in.
- The same stack (the container launcher, on both engines) runs a job that allocates memory
  until the kernel stops it, with RUN_MEMORY_LIMIT=400m: the run ends FAILURE with a message
  that names the ceiling (recover_runs.py --run), and the example job succeeds afterwards in
  a container that has the memory, CPU and process ceilings of .env.
- That stack stores its step logs in S3 (compute_logs=s3, moto's server on this host), with the
  same hostile value as the store's secret key: no command line shows it either, every Python
  of the images reads it from the secret file, no container's configuration holds it, and a
  job of the user's code that prints a marker shows it in the UI's step logs, from the run's own
  container. The other stack (the code-server launcher, the shared volume) shows the same marker.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from launchpad_dev import step_logs as s3logs
from launchpad_dev.common import computed, note
from launchpad_dev.dagster_api import Stack
from launchpad_dev.engines import ENGINES, compose_argv, make, missing, remove_stack, render, tool_env

ROOT = Path(__file__).resolve().parent.parent
ENV_MAKE = ROOT / "template" / "scripts" / "env_make.py"

# The password of both PostgreSQL servers: every character that make, a shell or a dotenv
# reader treats specially (and a trailing backslash), as .env writes it and as it is meant.
PASSWORD = "s3cr#t $x9 'q\" \\end\\"
PASSWORD_IN_ENV = '"s3cr#t $x9 \'q\\" \\\\end\\\\"'
# What .env lines mean: (line, the value meant), as env_make.py's docstring says.
ENV_LINES = [
    (f"DAGSTER_PG_PASSWORD={PASSWORD_IN_ENV}", PASSWORD),
    ("SINGLE='a#b $c \"d\" \\e'", 'a#b $c "d" \\e'),
    ("PLAIN=abc#def  # a comment", "abc#def"),
    ("SPACED =  padded value  ", "padded value"),
    ("export EXPORTED=yes", "yes"),
    ("DOLLARS=$HOME$(shell touch PWNED)${USER}", "$HOME$(shell touch PWNED)${USER}"),
    ("EMPTY=", ""),
    ("TRAILING='ends with a backslash\\'", "ends with a backslash\\"),
]
# .env lines refused, each with words of the message that names the problem.
ENV_REFUSED = [
    ("DAGSTER_PG_PASSWORD='unclosed", "not closed"),
    ('QUOTED="a" b', "after the closing quote"),
    ("no equals sign", "not a setting"),
    ("SHELL=/bin/evil", "make's or the shell's own variable"),
    ("MAKEFLAGS=-j100", "make's or the shell's own variable"),
]

# An external PostgreSQL that serves TLS only, with the certificate of a CA made by the test
# (its initdb script switches TLS on and rejects every connection without it).
EXTERNAL_DB = """\
services:
  extdb:
    image: {image}
    container_name: {slug}-extdb
    environment:
      POSTGRES_USER: ext_user
      POSTGRES_PASSWORD_FILE: /tls/password
      POSTGRES_DB: ext_db
    volumes:
      - extdb-data:/var/lib/postgresql/data
      - ./extdb-tls:/tls:ro,z
      - ./extdb-tls/tls-only.sh:/docker-entrypoint-initdb.d/tls-only.sh:ro,z
    networks: [dagster]
volumes:
  extdb-data: {{}}
"""
TLS_ONLY = """\
#!/bin/sh
# Run once by the image's entrypoint after initdb, as postgres: TLS on, and only TLS.
set -eu
cp /tls/server.crt /tls/server.key "$PGDATA/"
chmod 600 "$PGDATA/server.key"
cat >> "$PGDATA/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
cat > "$PGDATA/pg_hba.conf" <<EOF
local all all trust
hostnossl all all all reject
hostssl all all all scram-sha-256
EOF
"""


def write_env(root: Path, values: dict[str, str]) -> None:
    """.env from .env.example with some lines replaced by the given text (as written in .env)."""
    text = (root / ".env.example").read_text()
    for key, written in values.items():
        line = f"{key}={written}"
        text, count = re.subn(rf"^{key}=.*$", lambda _match, line=line: line, text, flags=re.M)
        assert count == 1, key
    (root / ".env").write_text(text)


def make_certificates(directory: Path, host: str) -> None:
    """A CA, and a server certificate it signed for `host` (with the key, readable by the
    server's user in the container); the password file of the server."""
    directory.mkdir(parents=True)
    openssl = ["openssl", "req", "-new", "-nodes", "-newkey", "rsa:2048", "-days", "2"]

    def run(*args: str) -> None:
        subprocess.run(args, cwd=directory, check=True, capture_output=True)

    run(*openssl, "-x509", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=Launchpad test CA")
    run(*openssl, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={host}")
    (directory / "san.cnf").write_text(f"subjectAltName=DNS:{host}\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "san.cnf",
    )
    (directory / "password").write_text(PASSWORD)
    (directory / "tls-only.sh").write_text(TLS_ONLY)
    for path in directory.iterdir():
        path.chmod(0o755 if path.suffix == ".sh" else 0o644)


class CommandLines:
    """Every process's command line on this host, as ps shows it to every local user, read
    from /proc every 20 ms while the block runs: the lines that hold `needle`."""

    def __init__(self, needle: str) -> None:
        self.needle, self.found, self.seen = needle.encode(), set(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    line = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                self.seen += 1
                if self.needle in line:
                    self.found.add(line.replace(b"\0", b" ").decode(errors="replace")[:300])
            time.sleep(0.02)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------ .env through make


@pytest.mark.parametrize("line, meant", ENV_LINES, ids=[line.split("=")[0] for line, _ in ENV_LINES])
def test_a_value_reaches_the_recipes_exactly_as_env_means_it(line, meant, tmp_path):
    (tmp_path / ".env").write_text(f"# a comment\n\n{line}\n")
    written = subprocess.run(
        ["python3", str(ENV_MAKE), ".env", "env.mk"], cwd=tmp_path, capture_output=True, text=True
    )
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "env.mk").stat().st_mode & 0o077 == 0, "env.mk holds secrets: owner only"
    key = re.match(r"(?:export )?\s*(\w+)", line).group(1)
    (tmp_path / "Makefile").write_text(
        "include env.mk\nexport\nshow:\n\t@printf '%s' \"$$" + key + '" > shown\n'
    )
    result = subprocess.run(["make", "-s", "show"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "shown").read_text() == meant
    assert not (tmp_path / "PWNED").exists(), "a value ran a command in make"


@pytest.mark.parametrize("line, words", ENV_REFUSED, ids=[w for _, w in ENV_REFUSED])
def test_a_line_make_cannot_mean_is_refused_by_its_number(line, words, tmp_path):
    (tmp_path / ".env").write_text(f"FIRST=ok\n{line}\n")
    result = subprocess.run(
        ["python3", str(ENV_MAKE), ".env", "env.mk"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1, result
    assert "line 2" in result.stderr and words in result.stderr, result.stderr
    assert not (tmp_path / "env.mk").exists()


# ---------------------------------------------------------------- the stacks, per engine


def start_external_db(root: Path, engine, slug: str, compose_command: str) -> None:
    result = subprocess.run(
        [*compose_argv(compose_command), "up", "-d", "extdb"],
        cwd=root,
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    engine.wait_pg_ready(f"{slug}-extdb", "ext_user", "ext_db", "the external PostgreSQL")


def tls_connections(engine, slug: str) -> tuple[int, int]:
    """(connections with TLS, connections without) of ext_user on the external server."""
    query = (
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s "
        "JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'ext_user' AND s.pid <> pg_backend_pid()"
    )
    out = engine.run(
        "exec", f"{slug}-extdb", "psql", "-U", "ext_user", "-d", "ext_db", "-Atc", query, check=True
    )
    with_tls, without = out.stdout.strip().split("|")
    return int(with_tls), int(without)


def up_watched(root: Path) -> tuple[subprocess.CompletedProcess, CommandLines]:
    with CommandLines(PASSWORD[:6]) as watch:
        result = make(root, "up")
    return result, watch


# A job that takes memory until the kernel stops it (added to the first code location).
HOG_JOB = '''

@dg.op
def take_memory() -> None:
    """Holds 20 MB more every 50 ms (bytes written, so that the kernel counts them)."""
    import time

    held = []
    while True:
        held.append(b"x" * (20 * 2**20))
        time.sleep(0.05)


@dg.job
def hog_job():
    take_memory()


defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[hog_job]))
'''
RUN_LIMITS = {"RUN_MEMORY_LIMIT": "400m", "RUN_CPUS": "0.5", "RUN_PIDS_LIMIT": "300"}


def check_run_ceilings(engine, stack: Stack) -> str:
    """The hog's run fails with a message naming the memory ceiling; then the example job
    succeeds in a container with the .env's ceilings. Returns a figure."""
    hog = stack.launch("hog_job")
    assert stack.wait_run(hog, timeout=300).value == "FAILURE", stack.run(hog)
    messages = stack.errors(hog)
    assert any("memory ceiling" in m and "RUN_MEMORY_LIMIT" in m for m in messages), messages
    seen: dict[str, str] = {}

    def inspect_run_containers() -> None:
        names = engine.run("ps", "--filter", "label=dagster/run_id", "--format", "{{.Names}}").stdout.split()
        for name in names:
            shown = engine.run(
                "inspect",
                "--format",
                "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
                name,
            )
            if shown.returncode == 0:
                seen[name] = shown.stdout.strip()

    run_id = stack.launch()
    assert stack.wait_run(run_id, on_poll=inspect_run_containers).value == "SUCCESS", stack.errors(run_id)
    assert seen, "no run container seen while the example job ran"
    assert set(seen.values()) == {f"{400 * 2**20} 500000000 300"}, seen
    return f"out-of-memory run FAILURE ({messages[-1][:60]}...), then SUCCESS under {seen}"


def check_kube_stack(root: Path, stack: Stack) -> str:
    """The same project as the kube stack (`make kube-up`; Quadlet installs the same secret): the
    password reaches its PostgreSQL and Dagster pods through scripts/kube_secret.sh and the
    Podman secret, and the example job succeeds. Returns a figure."""
    down = make(root, "down")
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    with CommandLines(PASSWORD[:6]) as watch:
        started = time.monotonic()
        result = make(root, "kube-up", timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert not watch.found, f"the password on command lines during make kube-up: {sorted(watch.found)}"
    elapsed = time.monotonic() - started
    stack.wait_loaded(timeout=60)
    run_id = stack.launch()
    assert stack.wait_run(run_id).value == "SUCCESS", stack.errors(run_id)
    down = make(root, "kube-down")
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    return f"kube-up {elapsed:.0f} s, the job SUCCESS there too"


STACKS = {
    # engine: (storage, run launcher, slug): the external server over TLS with the container
    # launcher (the run's own container checks the server too, and has its ceilings), the
    # bundled PostgreSQL with the code-server launcher.
    "podman": [
        ("external-postgres", "container", "lp-sec-podman-ext"),
        ("postgres", "code-server", "lp-sec-podman"),
    ],
    "docker": [
        ("external-postgres", "container", "lp-sec-docker-ext"),
        ("postgres", "code-server", "lp-sec-docker"),
    ],
}


def test_the_s3_settings_are_checked_and_the_secret_key_kept_exactly(template_snapshot, tmp_path):
    """compute_logs=s3 without a store's settings: `make up`'s secret file and `make
    helm-s3-secret` refuse, naming the settings; a bad endpoint is refused as such. Filled in:
    the secret key's file (0700 directory) holds the hostile value byte for byte, and the Secret
    that `make helm-s3-secret` pipes to kubectl (a stand-in that keeps its stdin) carries every
    setting, none on kubectl's command line."""
    import base64
    import json

    root = render(template_snapshot, tmp_path / "s3", {"compute_logs": "s3"})
    key_file = ".build/secrets/s3-secret-key"
    refused = make(root, key_file)
    assert refused.returncode != 0 and "error: DAGSTER_S3_BUCKET is empty (.env)" in refused.stderr, refused
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncat > {tmp_path}/manifest\n')
    kubectl.chmod(0o755)
    refused = make(root, "helm-s3-secret", f"KUBECTL={kubectl}")
    assert "DAGSTER_S3_BUCKET, DAGSTER_S3_ACCESS_KEY_ID, DAGSTER_S3_SECRET_ACCESS_KEY empty" in refused.stderr
    settings = {"DAGSTER_S3_BUCKET": "logs", "DAGSTER_S3_ACCESS_KEY_ID": "key-id",
                "DAGSTER_S3_SECRET_ACCESS_KEY": PASSWORD_IN_ENV,
                "DAGSTER_S3_ENDPOINT_URL": "minio.example.internal:9000"}  # fmt: skip
    write_env(root, settings)
    refused = make(root, key_file)
    assert "error: DAGSTER_S3_ENDPOINT_URL must be an http:// or https:// URL" in refused.stderr, refused
    write_env(root, settings | {"DAGSTER_S3_ENDPOINT_URL": "http://minio.example.internal:9000"})
    made = make(root, key_file)
    assert made.returncode == 0, made.stdout + made.stderr
    assert (root / key_file).read_text() == PASSWORD
    assert oct((root / key_file).parent.stat().st_mode & 0o777) == "0o700"
    made = make(root, "helm-s3-secret", f"KUBECTL={kubectl}")
    assert made.returncode == 0, made.stdout + made.stderr
    manifest = json.loads((tmp_path / "manifest").read_text())
    data = {k: base64.b64decode(v).decode() for k, v in manifest["data"].items()}
    assert data == {
        "DAGSTER_S3_ENDPOINT_URL": "http://minio.example.internal:9000", "DAGSTER_S3_BUCKET": "logs",
        "DAGSTER_S3_PREFIX": "dagster/compute-logs", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": PASSWORD,
    }, data  # fmt: skip
    assert manifest["metadata"]["name"] == computed(root)["helm_s3_secret"]
    argv = (tmp_path / "argv").read_text()
    assert PASSWORD[:6] not in argv + made.stdout + made.stderr, "the secret key on a command line or shown"


@pytest.mark.parametrize("engine_name", ["podman", "docker"])
def test_a_hostile_password_opens_postgres_over_tls_and_no_command_line_shows_it(
    engine_name, template_snapshot, tmp_path_factory
):
    engine = ENGINES[engine_name].require()
    figures = []
    s3 = s3logs.S3Server()
    for index, (storage, launcher, slug) in enumerate(STACKS[engine_name]):
        port = 3190 + index + (0 if engine_name == "podman" else 2)
        root = tmp_path_factory.mktemp("secrets") / slug
        answers = {
            "container_engine": engine_name,
            "storage": storage,
            "run_launcher": launcher,
            "project_slug": slug,
            "ui_port": port,
            # The container launcher's stack keeps its step logs in S3, the other on the volume.
            "compute_logs": "s3" if launcher == "container" else "volume",
        }
        render(template_snapshot, root, answers)
        facts = computed(root)
        engine.clear_leftovers(slug)
        if launcher == "container" and not Path(facts["engine_socket"]).is_socket():
            missing(f"the {engine_name} API socket {facts['engine_socket']} is not there")
        external = storage == "external-postgres"
        settings = {"DAGSTER_PG_PASSWORD": PASSWORD_IN_ENV}
        if external:
            engine.require_image(facts["postgres_image"])
            make_certificates(root / "extdb-tls", "extdb")
            override = EXTERNAL_DB.format(image=facts["postgres_image"], slug=slug)
            (root / "compose.override.yaml").write_text(override)
            settings |= {
                "DAGSTER_PG_HOST": "extdb",
                "DAGSTER_PG_USER": "ext_user",
                "DAGSTER_PG_DB": "ext_db",
                "DAGSTER_PG_SSLMODE": "verify-full",
                "DAGSTER_PG_SSLROOTCERT": "extdb-tls/ca.crt",
            }
        if launcher == "container":
            settings |= RUN_LIMITS
            location = yaml.safe_load((root / ".copier-answers.yml").read_text())["code_locations"][0]
            definitions = root / "pipes" / location / "src" / location / "definitions.py"
            definitions.write_text(definitions.read_text() + HOG_JOB)
            s3.start()
            settings |= s3.settings(secret_key=PASSWORD_IN_ENV)
        s3logs.add_marker_job(
            root, yaml.safe_load((root / ".copier-answers.yml").read_text())["code_locations"][0]
        )
        write_env(root, settings)
        try:
            if external:
                start_external_db(root, engine, slug, facts["compose_command"])
            started = time.monotonic()
            result, watch = up_watched(root)
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
            assert watch.seen > 1000, f"the watch read only {watch.seen} command lines"
            assert not watch.found, f"the password on command lines during make up: {sorted(watch.found)}"
            figures.append(
                f"{storage} up {time.monotonic() - started:.0f} s, {watch.seen} command lines read"
            )
            location = yaml.safe_load((root / ".copier-answers.yml").read_text())["code_locations"][0]
            stack = Stack(port, location)
            stack.wait_loaded(timeout=60)
            run_id = stack.launch()
            status = stack.wait_run(run_id)
            assert status.value == "SUCCESS", stack.run(run_id)
            marker = stack.launch(s3logs.MARKER_JOB_NAME)
            assert stack.wait_run(marker).value == "SUCCESS", stack.errors(marker)
            s3logs.check_marker(stack, marker)
            if launcher == "container":
                stored = s3.objects(marker)
                assert sorted(k.rsplit(".", 1)[1] for k in stored) == ["err", "out"], sorted(stored)
            figures.append(f"step logs ({'s3' if launcher == 'container' else 'volume'}): the marker shown")
            if launcher == "container":
                figures.append(check_run_ceilings(engine, stack))
            if external:
                with_tls, without = tls_connections(engine, slug)
                assert with_tls > 0 and without == 0, (with_tls, without)
                figures.append(f"{with_tls} TLS connections, none without")
            # Every Python of the images reads the password from compose's secret file as it
            # starts (a command exec'd by hand too); the containers' configuration holds none.
            secrets = ["DAGSTER_PG_PASSWORD"] + (["AWS_SECRET_ACCESS_KEY"] if launcher == "container" else [])
            for service, secret in ((s, n) for s in ("webserver", "daemon") for n in secrets):
                read = f"import os, sys; sys.stdout.write(os.environ['{secret}'])"
                shown = engine.run("exec", f"{slug}-{service}", "python3", "-c", read, check=True)
                assert shown.stdout == PASSWORD, (service, secret)
                config = engine.run("inspect", "--format", "{{json .Config.Env}}", f"{slug}-{service}")
                assert PASSWORD[:6] not in config.stdout, f"{service}'s configuration holds the password"
            if engine_name == "podman" and not external:
                figures.append(check_kube_stack(root, stack))
        finally:
            s3.stop()
            remove_stack(engine, root, slug)
            if external:
                engine.run("rm", "-f", f"{slug}-extdb")
    note(f"secrets tier, {engine_name}", "; ".join(figures))

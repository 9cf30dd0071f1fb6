"""ui_access=login on both engines: the login proxy (Caddy, the stand-in of
docker.io/library/caddy:2.6.2 that tests/standins/make-standins.sh makes) in front of the UI, with
its own CA's certificate, two roles and the users file of `make user-add` / `make user-remove`.

Per engine one stack (`make up`), then from the host:
- without credentials HTTPS to `/` and `/graphql` gets 401; HTTP redirects to HTTPS; HSTS is
  sent; only the proxy publishes a port (the webservers publish none);
- as editor `/server_info` answers 200, a run launched through GraphQL reaches SUCCESS, and
  `/graphql` upgrades to a websocket (the UI's live run updates and logs);
- as viewer the runs are listed, and a launch or a termination is refused (a GraphQL error, the
  run count unchanged);
- a wrong password, an unknown user, a user removed while its connection stays open (no restart
  of the proxy) and malformed Authorization headers are refused;
- Chromium (Playwright) logs in as each role and takes a screenshot of the asset graph and the
  run (test-artifacts/ui-login-ENGINE-ROLE-*.png); the viewer's "Materialize all" is disabled;
- the users file is 0600 in a 0700 directory and holds no password; the logs of the proxy and
  the webservers hold none either;
- the step logs (compute_logs=s3, the code-server launcher) in a local S3 API (moto's server): a
  job of the user's code prints a marker to stdout and stderr; the UI's capturedLogs shows both
  and the bucket holds both objects; with the S3 API down, the job's run still ends in SUCCESS,
  its events say the upload failed, capturedLogs answers an error (the UI's "logs unavailable")
  and the webserver goes on; with the API back, a new run's logs are there again.

On Podman the same project then runs as the kube stack (`make kube-up`, the images `make up`
built): without credentials `/` and `/graphql` get 401 there too, an editor that `make user-add`
adds (reloading the kube stack's proxy) gets `/server_info` and a run of the marker job whose step
logs it reads from S3 (the kube stack's secret), a viewer reaches the read-only webserver, HTTP
redirects, and only the proxy's pod publishes a port."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import stat
import time
from pathlib import Path

import pytest
import requests

from launchpad_dev import step_logs as s3logs
from launchpad_dev.browser import capture_ui
from launchpad_dev.common import ROOT, note
from launchpad_dev.dagster_api import Stack, live_run_events
from launchpad_dev.engines import ENGINES, make, remove_stack, render, set_env
from launchpad_dev.local_registry import free_port

ARTIFACTS = Path(os.environ.get("LAUNCHPAD_ARTIFACTS", ROOT / "test-artifacts"))
PASSWORDS = {"alice": "editor-Pass#1 x", "bob": "viewer-Pass$2 y", "carol": "removed-Pass'3 z"}
ROLES = {"alice": "editor", "bob": "viewer", "carol": "editor"}
TERMINATE = """mutation ($id: String!) { terminateRun(runId: $id) { __typename
  ... on PythonError { message } ... on UnauthorizedError { message }
  ... on TerminateRunFailure { message } } }"""


def free_port_pair() -> int:
    """A free port whose next one is free too: the kube stack publishes HTTP on the UI's port + 1
    (its settings are compose's defaults, not .env's)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


def container(engine, name: str) -> dict:
    return json.loads(engine.run("container", "inspect", name, check=True).stdout)[0]


def published(engine, name: str) -> dict:
    """The container's published ports ({container port: [host bindings]}), none for none."""
    ports = container(engine, name)["NetworkSettings"].get("Ports") or {}
    return {port: bindings for port, bindings in ports.items() if bindings}


def websocket_status(port: int, ca: str, auth: tuple[str, str] | None) -> str:
    """The status line of a websocket handshake on /graphql through the proxy (HTTP/1.1)."""
    context = ssl.create_default_context(cafile=ca)
    headers = [
        "GET /graphql HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: graphql-ws",
    ]
    if auth:
        headers.append("Authorization: Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
            return tls.recv(4096).decode(errors="replace").split("\r\n")[0]


@pytest.mark.parametrize("engine_name", ["podman", "docker"])
def test_login_proxy_roles_and_refusals(template_snapshot, tmp_path, engine_name):
    engine = ENGINES[engine_name].require()
    slug = f"lp-login-{engine_name}"
    port = free_port_pair()
    http_port = port + 1
    root = render(
        template_snapshot,
        tmp_path / slug,
        {
            "container_engine": engine_name, "project_slug": slug, "ui_access": "login", "ui_port": port,
            "compute_logs": "s3",
        },
    )  # fmt: skip
    env_example = (root / ".env.example").read_text()
    settings = dict(line.split("=", 1) for line in env_example.splitlines() if "=" in line and line[0] != "#")
    for image in ("BASE_IMAGE", "POSTGRES_IMAGE", "PROXY_IMAGE"):
        engine.require_image(settings[image])
    set_env(root, "DAGSTER_UI_HTTP_PORT", str(http_port))
    s3 = s3logs.S3Server()
    s3.start()
    for name, value in s3.settings(secret_key="login-S3/secret+key=").items():
        set_env(root, name, value)
    s3logs.add_marker_job(root, slug.replace("-", "_"))
    engine.clear_leftovers(slug)
    url = f"https://127.0.0.1:{port}"
    try:
        up = make(root, "up", timeout=1800)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert f"Dagster UI ready at {url}" in up.stdout, up.stdout[-2000:]

        users = root / "secrets/ui-users/users.caddy"
        for name, role in ROLES.items():
            added = make(
                root, "user-add", f"NAME={name}", f"ROLE={role}", extra_env={"PASSWORD": PASSWORDS[name]}
            )
            assert added.returncode == 0, added.stdout + added.stderr
            assert "reloaded the users" in added.stdout, added.stdout
        assert stat.S_IMODE(users.stat().st_mode) == 0o600
        assert stat.S_IMODE(users.parent.stat().st_mode) == 0o700
        text = users.read_text()
        assert not [p for p in PASSWORDS.values() if p in text], "a password in clear in the users file"
        assert text.count("$2a$") == len(PASSWORDS), text
        listed = make(root, "users")
        lines = [line for line in listed.stdout.splitlines() if not line.startswith("make")]
        assert lines == ["alice editor", "bob viewer", "carol editor"], listed.stdout

        cert = make(root, "ca-cert")
        assert cert.returncode == 0, cert.stdout + cert.stderr
        ca = str(root / ".build/proxy-ca.crt")
        assert f"the proxy's root certificate: {ca}" in cert.stdout

        # Without credentials: 401 everywhere, with HSTS; HTTP redirects to HTTPS.
        for path in ("/", "/server_info"):
            response = requests.get(url + path, verify=ca, timeout=30)
            assert response.status_code == 401, (path, response.status_code)
            assert response.headers["Strict-Transport-Security"].startswith("max-age="), response.headers
        response = requests.post(f"{url}/graphql", json={"query": "{ version }"}, verify=ca, timeout=30)
        assert response.status_code == 401
        redirect = requests.get(f"http://127.0.0.1:{http_port}/runs?x=1", allow_redirects=False, timeout=30)
        assert redirect.status_code in (301, 308), redirect.status_code
        assert redirect.headers["Location"] == f"{url}/runs?x=1"

        # Only the proxy is published: the webservers' port 3000 is on the project network only.
        assert not published(engine, f"{slug}-webserver"), published(engine, f"{slug}-webserver")
        assert not published(engine, f"{slug}-webserver-viewer")
        proxy_ports = published(engine, f"{slug}-proxy")
        host_ports = {b["HostPort"] for bindings in proxy_ports.values() for b in bindings}
        assert host_ports == {str(port), str(http_port)}, proxy_ports

        # As editor: the UI, a run to SUCCESS, the websocket of live updates.
        editor = Stack(port, slug.replace("-", "_"), url=url, auth=("alice", PASSWORDS["alice"]), verify=ca)
        info = requests.get(f"{url}/server_info", auth=editor.auth, verify=ca, timeout=30)
        assert info.status_code == 200 and "dagster_webserver_version" in info.json(), info.text[:300]
        assert info.headers["Strict-Transport-Security"].startswith("max-age=")
        editor.wait_loaded(timeout=120)
        run_id = editor.launch()
        # The run page's live log: its events over the websocket through the proxy, the later
        # ones pushed while the run goes on.
        live = live_run_events(url, run_id, auth=editor.auth, verify=ca)
        assert len(live) >= 2 and "RunSuccessEvent" in live[-1], live
        assert editor.wait_run(run_id).value == "SUCCESS", editor.errors(run_id)
        note(f"login proxy ({engine_name}): live run events over the websocket", f"{len(live)} messages")
        assert websocket_status(port, ca, editor.auth).startswith("HTTP/1.1 101"), "no websocket"
        assert " 401" in websocket_status(port, ca, None)

        # As viewer: the runs are there; launching is refused, and so is terminating a run the
        # editor just launched (queued or running), which goes on to SUCCESS.
        viewer = Stack(port, editor.location, url=url, auth=("bob", PASSWORDS["bob"]), verify=ca)
        before = viewer.run_ids()
        assert run_id in before
        with pytest.raises(Exception, match="UnauthorizedError"):
            viewer.launch()
        assert viewer.run_ids() == before == editor.run_ids()
        second = editor.launch()
        terminated = viewer.post(TERMINATE, id=second)
        result = (terminated.get("data") or {}).get("terminateRun") or {}
        # (Dagster answers a refusal of a run it has with TerminateRunFailure and this message.)
        assert result.get("message") == "You do not have permission to terminate this run", terminated
        assert editor.wait_run(second).value == "SUCCESS", editor.errors(second)
        assert viewer.run_ids() == before | {second}
        note(f"login proxy ({engine_name}): viewer's launch refused", "run count unchanged")

        check_step_logs(editor, s3, engine_name)

        # Refused: wrong password, unknown user, malformed Authorization headers.
        for auth in [("alice", "wrong-password"), ("mallory", PASSWORDS["alice"]), ("alice", "")]:
            assert requests.get(f"{url}/server_info", auth=auth, verify=ca, timeout=30).status_code == 401, (
                auth
            )
        no_colon = "Basic " + base64.b64encode(b"no-colon").decode()
        for header in ["Basic !!!not-base64", "Bearer x", no_colon, "Basic", ""]:
            got = requests.get(f"{url}/server_info", headers={"Authorization": header}, verify=ca, timeout=30)
            assert got.status_code == 401, (header, got.status_code)

        # A user removed while its connection stays open: refused at its next request, and the
        # proxy was not restarted.
        started = container(engine, f"{slug}-proxy")["State"]["StartedAt"]
        with requests.Session() as session:
            # (verify per request: requests lets SSL_CERT_FILE override a session's.)
            session.auth = ("carol", PASSWORDS["carol"])
            assert session.get(f"{url}/server_info", verify=ca, timeout=30).status_code == 200
            removed = make(root, "user-remove", "NAME=carol")
            assert removed.returncode == 0, removed.stdout + removed.stderr
            assert session.get(f"{url}/server_info", verify=ca, timeout=30).status_code == 401
        assert container(engine, f"{slug}-proxy")["State"]["StartedAt"] == started
        assert "carol" not in users.read_text()

        # A real browser logs in as each role: the same asset graph and run, and the viewer's
        # "Materialize all" disabled (the read-only webserver's).
        for user, role in (("alice", "editor"), ("bob", "viewer")):
            seen = capture_ui(
                url, editor.location, "example", ["raw_orders", "order_summary"], run_id, ARTIFACTS,
                credentials=(user, PASSWORDS[user]), name=f"ui-login-{engine_name}-{role}",
            )  # fmt: skip
            assert seen["asset graph"] == ["raw_orders", "order_summary"], (role, seen)
            assert seen["run page"], (role, seen)
            assert seen["materialize enabled"] == (role == "editor"), (role, seen)
            note(f"login proxy ({engine_name}): browser as {role}", str(seen))
        note(f"login proxy ({engine_name}): screenshots", str(ARTIFACTS / f"ui-login-{engine_name}-*.png"))

        # No password in any log of the stack's web side.
        for service in ("proxy", "webserver", "webserver-viewer"):
            logs = engine.run("logs", f"{slug}-{service}")
            found = [name for name, p in PASSWORDS.items() if p in logs.stdout + logs.stderr]
            assert not found, f"{service}'s log holds the password of {found}"

        if engine_name == "podman":
            check_kube_stack(engine, root, slug, port, s3)
    finally:
        s3.stop()
        if (root / "Makefile").exists():
            remove_stack(engine, root, slug)


def check_step_logs(editor: Stack, s3: s3logs.S3Server, engine_name: str) -> None:
    """compute_logs=s3 under the code-server launcher: the marker in the UI's step logs and in
    the bucket; the S3 API down: the run ends as it would and the UI says the logs are not there;
    back: a new run's logs are there."""
    run_id = editor.launch(s3logs.MARKER_JOB_NAME)
    assert editor.wait_run(run_id).value == "SUCCESS", editor.errors(run_id)
    s3logs.check_marker(editor, run_id)
    stored = s3.objects(run_id)
    outs = [v for k, v in stored.items() if k.endswith(".out")]
    errs = [v for k, v in stored.items() if k.endswith(".err")]
    marked = s3logs.MARKER_OUT.encode() in b"".join(outs) and s3logs.MARKER_ERR.encode() in b"".join(errs)
    assert marked, sorted(stored)

    s3.stop()
    started = time.monotonic()
    down = editor.launch(s3logs.MARKER_JOB_NAME)
    assert editor.wait_run(down).value == "SUCCESS", editor.errors(down)
    ended = time.monotonic() - started
    answer, messages = s3logs.step_logs(editor, down)
    # What the UI's log pane gets: an error that names the store it could not reach.
    assert answer.get("errors") and not (answer.get("data") or {}).get("capturedLogs"), answer
    assert "Could not connect to the endpoint URL" in answer["errors"][0]["message"], answer
    assert any(s3logs.UPLOAD_FAILED in m for m in messages), messages
    assert requests.get(f"{editor.url}/server_info", auth=editor.auth, verify=editor.verify, timeout=30).ok
    s3.start()
    back = editor.launch(s3logs.MARKER_JOB_NAME)
    assert editor.wait_run(back).value == "SUCCESS", editor.errors(back)
    s3logs.check_marker(editor, back)
    note(
        f"step logs, s3 ({engine_name}, code-server launcher)",
        f"marker in capturedLogs and {len(stored)} objects; S3 down: SUCCESS after {ended:.0f} s, "
        f"capturedLogs: {answer['errors'][0]['message'][:80]!r}; back up: marker again",
    )


def check_kube_stack(engine, root: Path, slug: str, port: int, s3: s3logs.S3Server) -> None:
    """The project's kube stack in place of its compose stack (Podman): the login proxy in front
    there too. Its proxy's own CA (in the claim SLUG-proxy-data) comes from `make ca-cert`, and
    `make user-add` reloads its proxy (the container SLUG-proxy-proxy)."""
    down = make(root, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    url = f"https://127.0.0.1:{port}"
    up = make(root, "kube-up", timeout=1800)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert f"Dagster UI ready at {url}" in up.stdout, up.stdout[-2000:]
    cert = make(root, "ca-cert")
    assert cert.returncode == 0, cert.stdout + cert.stderr
    ca = str(root / ".build/proxy-ca.crt")

    # Without credentials: 401, the UI and GraphQL alike.
    for path in ("/", "/server_info"):
        assert requests.get(url + path, verify=ca, timeout=30).status_code == 401, path
    response = requests.post(f"{url}/graphql", json={"query": "{ version }"}, verify=ca, timeout=30)
    assert response.status_code == 401
    redirect = requests.get(f"http://127.0.0.1:{port + 1}/runs", allow_redirects=False, timeout=30)
    assert redirect.status_code in (301, 308) and redirect.headers["Location"] == f"{url}/runs"

    # An editor added while the kube stack runs: its proxy reloads, no restart.
    password = "kube-editor-Pass%4 w"
    added = make(root, "user-add", "NAME=dave", "ROLE=editor", extra_env={"PASSWORD": password})
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"{slug}-proxy-proxy reloaded the users" in added.stdout, added.stdout
    info = requests.get(f"{url}/server_info", auth=("dave", password), verify=ca, timeout=30)
    assert info.status_code == 200 and "dagster_webserver_version" in info.json(), info.text[:300]
    # The step logs in S3 there too (the kube stack's secret holds the store's settings).
    editor = Stack(port, slug.replace("-", "_"), url=url, auth=("dave", password), verify=ca)
    editor.wait_loaded(timeout=120)
    run_id = editor.launch(s3logs.MARKER_JOB_NAME)
    assert editor.wait_run(run_id).value == "SUCCESS", editor.errors(run_id)
    s3logs.check_marker(editor, run_id)
    assert s3.objects(run_id), "no step logs in the bucket"
    # A viewer (of the compose part: the same users file) reaches the read-only webserver.
    viewer = Stack(port, slug.replace("-", "_"), url=url, auth=("bob", PASSWORDS["bob"]), verify=ca)
    with pytest.raises(Exception, match="UnauthorizedError"):
        viewer.launch()

    # Only the proxy's pod publishes a port: the webservers' are on the project network only.
    for service in ("webserver", "webserver-viewer"):
        assert not published(engine, f"{slug}-{service}-{service}"), service
    proxy_ports = published(engine, f"{slug}-proxy-proxy")
    host_ports = {b["HostPort"] for bindings in proxy_ports.values() for b in bindings}
    assert host_ports == {str(port), str(port + 1)}, proxy_ports
    logs = engine.run("logs", f"{slug}-proxy-proxy")
    assert password not in logs.stdout + logs.stderr, "the kube proxy's log holds a password"

    down = make(root, "kube-down")
    assert down.returncode == 0, down.stdout + down.stderr
    note("login proxy (podman kube stack)", "401 without a login; editor and viewer through it")

"""scripts/helm.py (`make helm-values`, `make helm-install`): the values of the project's images."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import helm  # noqa: E402

VALUES = """\
dagsterWebserver:
  image: {repository: "@REGISTRY@/proj-webserver", tag: "@IMAGE_TAG@"}
dagster-user-deployments:
  deployments:
    - image: {repository: "@REGISTRY@/proj-pipes-a", tag: "@IMAGE_TAG@"}
"""


def test_every_image_gets_the_registry_and_the_tag():
    text = helm.render(VALUES, "r.example.com:5000/team", "1.4.0")
    assert "@" not in text.replace("r.example.com", "")
    assert text.count('"r.example.com:5000/team/proj-') == 2 and text.count('tag: "1.4.0"') == 2


def write(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploy/helm").mkdir(parents=True, exist_ok=True)
    (tmp_path / "deploy/helm/values.yaml").write_text(VALUES)
    return helm.main(["values", "--engine=podman", "--project=proj", "--local=localhost", *args])


def test_without_registry_the_local_names_and_latest_with_a_warning(tmp_path, monkeypatch, capsys):
    assert write(tmp_path, monkeypatch) == 0
    text = (tmp_path / ".build/helm/values.yaml").read_text()
    assert '"localhost/proj-webserver", tag: "latest"' in text
    out, err = capsys.readouterr()
    assert "IMAGE_TAG is 'latest'" in err
    assert out == (
        "wrote .build/helm/values.yaml; its images: localhost/proj-NAME:latest"
        " (the local names: no REGISTRY)\n"
    )


def test_a_bad_registry_writes_nothing(tmp_path, monkeypatch, capfd):
    # scripts/push_images.py checks it, as for `make push`: one error line.
    assert write(tmp_path, monkeypatch, "--registry=myhost/team", "--tag=1") == 1
    errors = capfd.readouterr().err.splitlines()
    assert [line for line in errors if line.startswith("error: ")] == errors[:1]
    assert errors[0].startswith("error: make helm-values: ")
    assert not (tmp_path / ".build/helm/values.yaml").exists()


def test_install_shows_the_command_without_helm_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["install", "--helm=echo", "--release=r", "--namespace=n", "--version", "1.13.27"]
    assert helm.main([*argv, "--", "--set", "secret=x"]) == 0
    shown = capsys.readouterr().out.splitlines()[0]
    assert shown.startswith("echo upgrade --install r dagster --repo https://")
    assert (
        "--version 1.13.27 --namespace n -f .build/helm/values.yaml HELM_FLAGS (not shown)" in shown
    )
    assert "secret" not in shown


LOGIN = """\
dagsterWebserver: {enableReadOnly: true}
extraManifests:
  - {kind: Service, metadata: {name: "@RELEASE@-ui-proxy"}}
  - {kind: Ingress, spec: {rules: [{host: "@UI_HOST@"}]}}
"""


def test_login_values_get_the_release_and_the_ui_host():
    text = helm.render(LOGIN, "r", "1", release="lp", ui_host="dagster.example.com")
    assert "@" not in text
    assert '"lp-ui-proxy"' in text and 'host: "dagster.example.com"' in text


def test_login_values_refuse_a_missing_ui_host_or_a_bad_release(tmp_path, monkeypatch, capsys):
    for release, host, refused in [
        ("lp", "", "UI_HOST=''"),
        ("lp", "Dagster.example.com", "UI_HOST='Dagster.example.com'"),
        ("lp", "https://dagster.example.com", "UI_HOST='https://"),
        ("LP", "dagster.example.com", "HELM_RELEASE='LP'"),
        ("", "dagster.example.com", "HELM_RELEASE=''"),
    ]:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "deploy/helm").mkdir(parents=True, exist_ok=True)
        (tmp_path / "deploy/helm/values.yaml").write_text(LOGIN)
        args = ["values", "--project=proj", "--tag=1", f"--release={release}", f"--ui-host={host}"]
        assert helm.main(args) == 1
        errors = capsys.readouterr().err.splitlines()
        assert errors[-1].startswith(f"error: make helm-values: {refused}"), errors
        assert not (tmp_path / ".build/helm/values.yaml").exists()
    # Without login placeholders neither is needed (the values of ui_access=local).
    (tmp_path / "deploy/helm/values.yaml").write_text(VALUES)
    assert helm.main(["values", "--project=proj", "--tag=1"]) == 0


# A kubectl that logs its arguments and standard input, and prints a Secret for --dry-run.
FAKE_KUBECTL = """\
import json, sys
from pathlib import Path
args = sys.argv[1:]
stdin = sys.stdin.read() if "--filename=-" in args else ""
with open(Path(__file__).with_name("calls.jsonl"), "a") as log:
    log.write(json.dumps({"args": args, "stdin": stdin}) + "\\n")
if "create" in args:
    print("kind: Secret\\ndata: {users.caddy: SECRET-CONTENT}")
if "get" in args:
    sys.exit(int(Path(__file__).with_name("absent").exists()))
"""
HASH = "$2a$14$" + "a" * 53
USERS = "basicauth {\n\talice " + HASH + "\n}\nmap {http.auth.user.id} {launchpad_role} {\n}\n"


def users_secret(tmp_path, monkeypatch, users: str | None, absent: bool = False):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kubectl.py").write_text(FAKE_KUBECTL)
    if absent:
        (tmp_path / "absent").touch()
    if users is not None:
        (tmp_path / "users.caddy").write_text(users)
    code = helm.main([
        "users-secret", f"--kubectl={sys.executable} {tmp_path / 'kubectl.py'}",
        "--release=lp", "--namespace=ns", "--file=users.caddy",
    ])  # fmt: skip
    log = tmp_path / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return code, calls


def test_users_secret_is_made_from_the_users_file_through_a_pipe(tmp_path, monkeypatch, capsys):
    code, calls = users_secret(tmp_path, monkeypatch, USERS)
    assert code == 0
    made, applied, got, restarted = calls
    assert made["args"][:2] == ["--namespace", "ns"]
    assert made["args"][2:] == [
        "create", "secret", "generic", "lp-ui-users", "--from-file=users.caddy=users.caddy",
        "--dry-run=client", "--output=yaml",
    ]  # fmt: skip
    # The Secret reaches `kubectl apply` on its standard input only, and is never printed.
    assert applied["args"][2:] == ["apply", "--filename=-"]
    assert "SECRET-CONTENT" in applied["stdin"]
    assert got["args"][2:] == ["get", "deployment/lp-ui-proxy"]
    assert restarted["args"][2:] == ["rollout", "restart", "deployment/lp-ui-proxy"]
    out = capsys.readouterr().out
    assert "SECRET-CONTENT" not in out and HASH not in out and "| " in out


def test_users_secret_before_the_install_restarts_nothing(tmp_path, monkeypatch, capsys):
    code, calls = users_secret(tmp_path, monkeypatch, USERS, absent=True)
    assert code == 0 and [c["args"][2] for c in calls] == ["create", "apply", "get"]
    assert "is not there yet" in capsys.readouterr().out


def test_users_secret_without_a_user_is_refused(tmp_path, monkeypatch, capsys):
    for users in (None, USERS.replace(f"\talice {HASH}\n", "")):
        code, calls = users_secret(tmp_path, monkeypatch, users)
        assert code == 1 and calls == []
        assert "has no user: add one first" in capsys.readouterr().err

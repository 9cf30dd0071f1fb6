"""scripts/helm.py (`make helm-values`, `make helm-install`): the values of the project's images."""

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

"""scripts/push_images.py (`make push`, and the REGISTRY check of kube-yaml and helm-values)."""

import importlib.util
import socket
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "push_images.py"
SPEC = importlib.util.spec_from_file_location("push_images", SCRIPT)
push_images = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(push_images)


@pytest.mark.parametrize(
    "registry",
    [
        "localhost:5000",
        "registry.example.com",
        "registry.example.com:443/team/data",
        "10.0.0.5:5000/a_b",
    ],
)
def test_registry_references_that_are_accepted(registry):
    assert push_images.REGISTRY.match(registry)


@pytest.mark.parametrize(
    "registry",
    [
        "myhost/team",
        "Registry.example.com/Team",
        "registry.example.com/team/",
        "https://r.example.com",
    ],
)
def test_registry_references_that_are_refused(registry):
    # No dot, port or 'localhost' (a Docker Hub namespace), upper case in the path, a scheme.
    assert not push_images.REGISTRY.match(registry)


@pytest.mark.parametrize(
    ("tag", "ok"), [("1.4.0", True), ("ci_2", True), (".x", False), ("a" * 129, False)]
)
def test_tags(tag, ok):
    assert bool(push_images.TAG.match(tag)) is ok


def test_the_remote_name_keeps_the_image_name_and_takes_the_tag():
    image = "localhost/proj-pipes-sales:latest"
    assert push_images.remote(image, "r.example.com:5000/team", "1.4.0") == (
        "r.example.com:5000/team/proj-pipes-sales:1.4.0"
    )


def run(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["push_images.py", *args])
    try:
        push_images.main()
    except SystemExit as exit:
        return exit.code
    return 0


def test_check_passes_on_an_answering_registry_and_fails_with_one_line(monkeypatch, capsys):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert run(monkeypatch, "--engine=podman", f"--registry=127.0.0.1:{port}/t", "--check") == 0
    # The listener is closed: nothing answers there now.
    assert run(monkeypatch, "--engine=podman", f"--registry=127.0.0.1:{port}/t", "--check") == 1
    assert run(monkeypatch, "--engine=podman", "--registry=myhost/team", "--check") == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.startswith("error: make push: ") for line in errors)
    assert "does not answer" in errors[0] and "not a registry reference" in errors[1]

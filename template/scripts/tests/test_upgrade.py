"""scripts/upgrade.py (`make upgrade`, `make migrate`): what it reads from Dagster's output,
and what it says when there is nothing to do."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import upgrade  # noqa: E402


def state(current: str, latest: str) -> str:
    """`dagster instance info`'s schema section, as Dagster prints it."""
    storages = ("event_log_storage", "run_storage", "schedule_storage")
    lines = [f"  {name}:\n    current: {current}\n    latest: {latest}" for name in storages]
    return "Storage schema state:\n---------------------\nschema:\n" + "\n".join(lines) + "\n"


def test_the_schema_revisions_are_read_from_instance_info():
    assert upgrade.schema(state("aaa", "bbb")) == [("aaa", "bbb")] * 3
    assert upgrade.behind(upgrade.schema(state("aaa", "bbb")))
    assert not upgrade.behind(upgrade.schema(state("bbb", "bbb")))
    assert upgrade.schema("no schema here") == []


def test_what_a_migration_applied():
    before = "Storage schema state before migration:\n" + state("aaa", "bbb")
    after = "Storage schema state after migration:\n" + state("bbb", "bbb")
    said = upgrade.applied(before + "Running migration:\n" + after)
    assert said == "schema aaa -> bbb; no data migration"
    data = "Starting data migration: run_partitions\nFinished data migration: run_partitions\n"
    same = "before:\n" + state("bbb", "bbb") + data + "Storage schema state after migration:\n"
    assert upgrade.applied(same + state("bbb", "bbb")) == (
        "no schema change (revision bbb); data migrations: run_partitions"
    )
    assert upgrade.applied("Traceback ...").startswith("schema unknown")


def test_image_ids_compare_without_their_algorithm():
    assert upgrade.bare("sha256:abc") == upgrade.bare("abc") == "abc"


def test_the_dagster_version_comes_from_the_image_label():
    docker = {"Config": {"Labels": {"io.dagster.version": "1.12.22"}}}
    podman = {"Config": {}, "Labels": {"io.dagster.version": "1.13.27"}}
    assert upgrade.label(docker) == "1.12.22"
    assert upgrade.label(podman) == "1.13.27"
    assert upgrade.label(None) == "unknown"


def test_nothing_to_do_changes_nothing(monkeypatch, capsys):
    """Same images, schema current: it says so and runs no command that changes anything."""
    ran = []

    def fake_run(*command, **kwargs):
        ran.append(command)
        if command[1:3] == ("container", "inspect"):
            out = '[{"Image": "sha256:abc"}]'
        elif command[1:3] == ("image", "inspect"):
            out = '[{"Id": "abc", "Config": {"Labels": {"io.dagster.version": "1.13.27"}}}]'
        else:  # dagster instance info
            out = state("bbb", "bbb")
        return upgrade.subprocess.CompletedProcess(command, 0, out, "")

    monkeypatch.setattr(upgrade, "run", fake_run)
    argv = ["upgrade", "--engine=podman", "--compose=podman-compose", "--project=p"]
    assert upgrade.main([*argv, "--image=webserver", "--image=daemon"]) == 0
    assert "Nothing to upgrade" in capsys.readouterr().out
    assert all(c[1] in ("container", "image", "exec") for c in ran), ran
    assert not [c for c in ran if "tag" in c or "stop" in c]


def test_a_failed_migration_names_the_backup_in_the_rollback(monkeypatch, capsys):
    """The images changed: the upgrade tags, drains, stops, backs up, migrates; the migration
    fails: it says so and prints the rollback command with the backup's file, once."""
    ran = []

    def fake_run(*command, **kwargs):
        ran.append(command)
        out, code = "", 0
        if command[1:3] == ("container", "inspect"):
            out = '[{"Image": "sha256:old"}]'
        elif command[1:3] == ("image", "inspect"):
            image_id = "new" if command[3].startswith("localhost/") else "old"
            out = json.dumps([{"Id": image_id, "Labels": {}}])
        elif command[:2] == ("make", "backup"):
            out = "backup written: backups/p-20260101T000000Z.dump (10 bytes)\n"
        elif "python3" in command and "-" in command:  # the drain
            out = "0\n"
        elif "migrate" in command:
            out, code = "sqlalchemy...InsufficientPrivilege: permission denied", 1
        return upgrade.subprocess.CompletedProcess(command, code, out, "")

    monkeypatch.setattr(upgrade, "run", fake_run)
    argv = ["upgrade", "--engine=podman", "--compose=podman-compose", "--project=p",
            "--image=daemon", "--backup=make backup", "--start=make up",
            "--rollback=make restore FILE=@FILE@ CONFIRM=yes ROLLBACK=yes"]  # fmt: skip
    assert upgrade.main(argv) == 1
    err = capsys.readouterr().err
    assert "error: the migration failed" in err
    restore = "make restore FILE=backups/p-20260101T000000Z.dump CONFIRM=yes ROLLBACK=yes"
    assert f"\n  {restore}\n" in err
    assert not [c for c in ran if c[:2] == ("make", "up")], "nothing starts after a failure"
    assert ("podman", "tag", "old", "localhost/p-daemon:pre-upgrade") in ran


def test_the_kube_stack_stops_pods_goes_down_then_backs_up_and_migrates(monkeypatch, capsys):
    """--kube (make kube-upgrade): the pods' containers (SLUG-NAME-NAME) compared, the daemon's
    pod stopped first, then the others', then the stack down before the backup and the
    migration; a failed migration prints the kube rollback with the backup's file."""
    ran = []

    def fake_run(*command, **kwargs):
        ran.append(command)
        out, code = "", 0
        if command[1:3] == ("container", "inspect"):
            assert command[3] in ("p-daemon-daemon", "p-webserver-webserver"), command
            out = '[{"Image": "sha256:old"}]'
        elif command[1:3] == ("image", "inspect"):
            image_id = "new" if command[3].startswith("localhost/") else "old"
            out = json.dumps([{"Id": image_id, "Labels": {}}])
        elif command[:2] == ("make", "kube-backup"):
            out = "backup written: backups/p-kube-20260101T000000Z.tgz\n"
        elif "python3" in command and "-" in command:  # the drain
            assert "p-webserver-webserver" in command, command
            out = "0\n"
        elif command[:2] == ("make", "kube-migrate"):
            out, code = "permission denied", 1
        return upgrade.subprocess.CompletedProcess(command, code, out, "")

    monkeypatch.setattr(upgrade, "run", fake_run)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")
    argv = ["upgrade", "--kube", "--engine=podman", "--compose=podman-compose", "--project=p",
            "--image=webserver", "--image=daemon", "--service=pipes-a", "--down=make kube-down",
            "--backup=make kube-backup", "--migrate=make kube-migrate", "--start=make kube-up",
            "--rollback=make kube-restore FILE=@FILE@ CONFIRM=yes ROLLBACK=yes"]  # fmt: skip
    assert upgrade.main(argv) == 1
    steps = [c[:3] for c in ran if c[1] == "pod" or c[0] == "make"]
    assert steps == [
        ("podman", "pod", "stop"), ("podman", "pod", "stop"), ("make", "kube-down"),
        ("make", "kube-backup"), ("make", "kube-migrate"),
    ], steps  # fmt: skip
    stops = [c for c in ran if c[1:3] == ("pod", "stop")]
    assert stops[0][-1] == "p-daemon" and stops[1][-2:] == ("p-webserver", "p-pipes-a"), stops
    restore = "make kube-restore FILE=backups/p-kube-20260101T000000Z.tgz CONFIRM=yes ROLLBACK=yes"
    assert f"\n  {restore}\n" in capsys.readouterr().err


def test_an_installed_quadlet_unit_is_refused_with_its_steps(monkeypatch, capsys, tmp_path):
    (tmp_path / "containers/systemd").mkdir(parents=True)
    (tmp_path / "containers/systemd/p.kube").write_text("[Kube]\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(upgrade, "run", lambda *c, **k: pytest.fail(f"ran {c}"))
    argv = ["upgrade", "--kube", "--engine=podman", "--compose=c", "--project=p", "--image=daemon"]
    assert upgrade.main(argv) == 1
    err = capsys.readouterr().err
    assert "systemctl --user stop p && make build kube-backup kube-migrate quadlet-install" in err
    assert len(err.strip().splitlines()) == 1, err

"""scripts/backup.py (`make backup`, `make restore`): file names, and what is said instead."""

import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import backup  # noqa: E402


def test_a_backup_is_named_after_the_project_and_the_time_in_utc():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert backup.backup_name("proj", when) == "proj-20260102T030405Z.dump"
    # Another zone's clock names the same instant the same way.
    paris = when.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert backup.backup_name("proj", paris) == "proj-20260102T030405Z.dump"


def test_names_sort_as_the_backups_were_taken():
    times = [
        datetime.datetime(2026, m, d, h, tzinfo=datetime.UTC)
        for m, d, h in ((1, 9, 23), (1, 10, 1), (12, 1, 0))
    ]
    names = [backup.backup_name("proj", t) for t in times]
    assert names == sorted(names)


def test_an_external_server_is_backed_up_with_its_own_tools():
    env = {"DAGSTER_PG_HOST": "db.example.com", "DAGSTER_PG_USER": "u", "DAGSTER_PG_DB": "d"}
    lines = backup.explanation("server", "podman", "proj", env)
    assert "(db.example.com)" in lines[0]
    assert "pg_dump --format=custom -h db.example.com -U u -d d > dagster.dump" in lines[1]
    assert "pg_restore --clean --if-exists -h db.example.com -U u -d d dagster.dump" in lines[2]


def test_a_volume_backup_is_a_tgz_named_the_same_way():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert backup.backup_name("proj", when, ".tgz") == "proj-20260102T030405Z.tgz"


def test_only_an_external_server_is_explained(capsys):
    for action in ("backup", "restore"):
        assert backup.main([action, "--method=server", "--engine=podman", "--project=p"]) == 1
        assert "PostgreSQL server" in capsys.readouterr().err


def test_a_volume_backup_runs_tar_in_a_one_off_container_without_network():
    args = backup.argparse.Namespace(engine="docker", project="proj", image="img:1")
    command = backup.one_off(args, "tar", "-C", "/data", "-czf", "-", ".")
    assert command[:5] == ["docker", "run", "--rm", "-i", "--network=none"]
    assert "proj_dagster-data:/data:ro" in command
    assert "proj_dagster-data:/data" in backup.one_off(args, "sh", writable=True)


def test_a_volume_restore_refuses_a_file_that_is_no_tgz(tmp_path, capsys):
    args = ["restore", "--method=volume", "--engine=false", "--compose=false", "--project=p"]
    bad = tmp_path / "p.tgz"
    bad.write_bytes(b"not a tar")
    assert backup.main([*args, f"--file={bad}"]) == 1
    assert f"Run: make restore FILE={bad} CONFIRM=yes" in capsys.readouterr().err
    assert backup.main([*args, f"--file={bad}", "--confirm=yes"]) == 1
    assert "is no backup of the data volume" in capsys.readouterr().err


def test_restore_needs_a_file_and_a_confirmation(tmp_path, capsys):
    args = ["restore", "--method=pg_dump", "--engine=false", "--compose=false", "--project=p"]
    assert backup.main([*args, f"--file={tmp_path / 'none.dump'}", "--confirm=yes"]) == 1
    assert "error: name an existing backup" in capsys.readouterr().err
    dump = tmp_path / "p.dump"
    dump.write_bytes(b"PGDMP")
    assert backup.main([*args, f"--file={dump}"]) == 1
    assert f"Run: make restore FILE={dump} CONFIRM=yes" in capsys.readouterr().err

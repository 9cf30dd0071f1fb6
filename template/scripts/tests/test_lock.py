"""scripts/lock.py (`make lock`, `make check-lock`): when a lock is stale, and what is written."""

import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import lock  # noqa: E402

LOCK = b'version = 1\n[[package]]\nname = "dagster"\n'


def test_the_checksum_is_sha256sums_line():
    assert lock.checksum(LOCK) == f"{hashlib.sha256(LOCK).hexdigest()}  uv.lock\n"


def test_a_lock_without_a_recorded_checksum_is_not_refused():
    # A new project's lock comes from the template: its first check records the checksum.
    assert not lock.changed_outside(LOCK, None)
    assert not lock.changed_outside(LOCK, lock.checksum(LOCK))
    assert lock.changed_outside(LOCK + b"# edited\n", lock.checksum(LOCK))


@pytest.mark.parametrize(
    ("text", "conflicted"),
    [
        (b"<<<<<<< before updating\nx\n=======\ny\n>>>>>>> after updating\n", True),
        (b"a\n>>>>>>> theirs\n", True),
        (b'name = "dagster"\n# <<<<<<< not at the start of a line\n', False),
        (b"=======\n", False),
    ],
)
def test_conflict_markers_count_at_the_start_of_a_line(text, conflicted):
    assert lock.conflicted({"uv.lock": text}) == (["uv.lock"] if conflicted else [])


def test_absent_files_have_no_conflicts():
    files = {"uv.lock": LOCK, "uv.lock.sha256": None, "pipes/a/requirements.txt": b"<<<<<<< x\n"}
    assert lock.conflicted(files) == ["pipes/a/requirements.txt"]


def test_exports_are_file_member_pairs():
    items = ["platform/requirements.txt:platform", "pipes/a/requirements.txt:pipes-a"]
    assert lock.exports(items) == [
        (Path("platform/requirements.txt"), "platform"),
        (Path("pipes/a/requirements.txt"), "pipes-a"),
    ]


def test_an_unchanged_export_keeps_its_time(tmp_path):
    # make rebuilds an image when its requirements file is newer than its stamp.
    path = tmp_path / "requirements.txt"
    assert lock.write_if_changed(path, "a==1\n")
    before = path.stat().st_mtime_ns
    assert not lock.write_if_changed(path, "a==1\n")
    assert path.stat().st_mtime_ns == before
    assert lock.write_if_changed(path, "a==2\n") and path.read_text() == "a==2\n"
    assert not (tmp_path / "requirements.txt.new").exists()


def fake_uv(tmp_path: Path, lock_exit: int = 0) -> list[str]:
    """A uv that prints an export and exits `lock_exit` on `lock`, as the real one would."""
    script = tmp_path / "uv.py"
    script.write_text(
        "import sys\n"
        "if sys.argv[1] == 'lock' and '--check' not in sys.argv:\n"
        "    open('uv.lock', 'w').write('version = 1\\n# locked\\n')\n"
        f"    sys.exit({lock_exit})\n"
        "if sys.argv[1] == 'export':\n"
        "    print(sys.argv[-1] + '==1.0')\n"
    )
    return [sys.executable, str(script)]


def test_check_refuses_a_lock_changed_outside_make_lock(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("uv.lock").write_bytes(LOCK)
    Path("uv.lock.sha256").write_text(lock.checksum(b"another lock"))
    uv = fake_uv(tmp_path)
    assert lock.check(uv, ["requirements.txt:member"]) == 1
    assert "uv.lock was changed outside 'make lock'" in capsys.readouterr().err


def test_check_records_the_first_checksum_and_refuses_an_edited_export(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("uv.lock").write_bytes(LOCK)
    Path("requirements.txt").write_text(lock.HEADER + "member==1.0\n")
    uv = fake_uv(tmp_path)
    assert lock.check(uv, ["requirements.txt:member"]) == 0
    assert Path("uv.lock.sha256").read_text() == lock.checksum(LOCK)
    assert "recorded uv.lock's checksum" in capsys.readouterr().out
    Path("requirements.txt").write_text(lock.HEADER + "member==1.0\nextra==2\n")
    assert lock.check(uv, ["requirements.txt:member"]) == 1
    assert "error: requirements.txt is not the export of uv.lock" in capsys.readouterr().err


def test_a_failed_lock_puts_the_previous_one_back(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("uv.lock").write_bytes(LOCK)
    assert lock.lock(fake_uv(tmp_path, lock_exit=1), [], "3.13", "gnu", []) == 1
    assert Path("uv.lock").read_bytes() == LOCK
    assert "error: locking failed" in capsys.readouterr().err


def test_a_conflicted_lock_is_locked_afresh(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("uv.lock").write_bytes(b"<<<<<<< before updating\n" + LOCK)
    monkeypatch.setattr(lock.check_wheels, "main", lambda argv: 0)
    assert lock.lock(fake_uv(tmp_path), ["requirements.txt:member"], "3.13", "gnu", []) == 0
    assert "locking afresh" in capsys.readouterr().out
    assert Path("uv.lock").read_text() == "version = 1\n# locked\n"
    assert Path("requirements.txt").read_text() == lock.HEADER + "member==1.0\n"
    assert Path("uv.lock.sha256").read_text() == lock.checksum(Path("uv.lock").read_bytes())


def test_a_lock_an_image_cannot_install_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("uv.lock").write_bytes(LOCK)
    Path("requirements.txt").write_text("old\n")
    monkeypatch.setattr(lock.check_wheels, "main", lambda argv: 1)
    assert lock.lock(fake_uv(tmp_path), ["requirements.txt:member"], "3.13", "gnu", []) == 1
    assert Path("uv.lock").read_bytes() == LOCK
    assert Path("requirements.txt").read_text() == "old\n"
    assert not Path("requirements.txt.new").exists() and not Path("uv.lock.sha256").exists()

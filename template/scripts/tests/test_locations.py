"""scripts/locations.py (`make locations`, `check-location`, `test`, ...)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import locations  # noqa: E402

PAIRS = ["sales:pipes-sales", "ml_models:pipes-ml-models"]


def test_list_names_each_location_its_directory_and_service_and_warns_of_orphans(capsys):
    assert locations.main(["list", *PAIRS, "--orphan=old"]) == 0
    out, err = capsys.readouterr()
    assert out == "sales\tpipes/sales/\tpipes-sales\nml_models\tpipes/ml_models/\tpipes-ml-models\n"
    assert err.startswith("warning: pipes/old/ is not a code location (code_locations in")
    assert "git log --stat -- pipes/old" in err


def test_check_accepts_no_location_or_known_ones_only():
    names = ["sales", "ml_models"]
    assert locations.check("", names) is None
    assert locations.check("sales", names) is None
    assert locations.check("sales ml_models", names) is None
    assert locations.check("sale", names) == (
        "no code location named 'sale'; the code locations are: sales ml_models"
    )


def test_pytests_exit_codes_say_what_failed():
    results = {"a": 0, "b": 5, "c": 1, "d": 2}
    assert locations.outcome(results) == (["b"], ["c", "d"])


def test_a_failed_build_step_stops_with_its_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, script in (("a", "exit 0"), ("b", "exit 3"), ("c", "touch ran")):
        (tmp_path / "pipes" / name).mkdir(parents=True)
        (tmp_path / "pipes" / name / "build.sh").write_text(script + "\n")
    assert locations.main(["build-steps", "a", "b", "c"]) == 1
    err = capsys.readouterr().err
    assert "error: the build step of the code location b failed (pipes/b/build.sh" in err
    assert not (tmp_path / "pipes/c/ran").exists()

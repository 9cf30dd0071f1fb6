"""Every code location runs with the shared executor and IO manager, unless it sets its own."""

import dagster as dg

from launchpad_pipes.defaults import EXECUTOR, with_defaults
from launchpad_pipes.io_manager import AtomicFilesystemIOManager


@dg.asset
def numbers() -> list[int]:
    return [1, 2, 3]


@dg.asset
def total(numbers: list[int]) -> int:
    return sum(numbers)


def test_a_location_gets_the_defaults_and_its_values_are_stored_by_them(tmp_path):
    defs = with_defaults(dg.Definitions(assets=[numbers, total]))
    assert defs.executor is EXECUTOR
    assert isinstance(defs.resources["io_manager"], AtomicFilesystemIOManager)
    io_manager = AtomicFilesystemIOManager(base_dir=str(tmp_path))
    assert dg.materialize([numbers, total], resources={"io_manager": io_manager}).success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["numbers", "total"]


def test_a_locations_own_executor_and_resources_stay():
    own = dg.FilesystemIOManager()
    defs = with_defaults(
        dg.Definitions(
            assets=[numbers], executor=dg.multiprocess_executor, resources={"io_manager": own}
        )
    )
    assert defs.executor is dg.multiprocess_executor
    assert defs.resources == {"io_manager": own}

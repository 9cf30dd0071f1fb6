"""What every code location of this project runs with, set here once for all of them."""

from __future__ import annotations

import dagster as dg

from .io_manager import AtomicFilesystemIOManager

# Each run is one process (the run queue's max_concurrent_runs bounds them, and so the memory
# they use); its steps execute in that process, one after another. For a job whose steps should
# run in parallel, give it `executor_def=dg.multiprocess_executor`.
EXECUTOR = dg.in_process_executor


def resources() -> dict[str, object]:
    """The resources of every location: `io_manager` writes each value whole, so that runs of
    the same job at once never read a half-written input (io_manager.py); the same files as
    Dagster's default."""
    return {"io_manager": AtomicFilesystemIOManager()}


def with_defaults(defs: dg.Definitions) -> dg.Definitions:
    """A code location's definitions with the defaults above where it sets none of its own: its
    executor, else EXECUTOR; its resources, and each of resources() under a key it leaves free."""
    own = defs.resources or {}
    shared = dg.Definitions(
        executor=None if defs.executor is not None else EXECUTOR,
        resources={key: value for key, value in resources().items() if key not in own},
    )
    return dg.Definitions.merge(shared, defs)

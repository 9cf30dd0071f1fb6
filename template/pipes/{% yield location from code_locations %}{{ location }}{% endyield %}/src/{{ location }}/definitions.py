"""Everything the code location serves: `dagster code-server start -m <package>.definitions`."""

import dagster as dg

from .assets import order_summary, raw_orders
from .io_manager import AtomicFilesystemIOManager
from .jobs import example_job, example_schedule
from .sensors import inbox_sensor

# Each run is one process (the run queue's max_concurrent_runs bounds them, and so the
# memory they use); its steps execute in that process, one after another. For a job
# whose steps should run in parallel, give it `executor_def=dg.multiprocess_executor`.
defs = dg.Definitions(
    executor=dg.in_process_executor,
    assets=[raw_orders, order_summary],
    jobs=[example_job],
    schedules=[example_schedule],
    sensors=[inbox_sensor],
    # Values are written whole, so that runs of the same job at once never read a half-written
    # input (io_manager.py); the same files as Dagster's default.
    resources={"io_manager": AtomicFilesystemIOManager()},
)

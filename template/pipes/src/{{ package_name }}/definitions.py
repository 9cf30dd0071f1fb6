"""Everything the code location serves: `dagster code-server start -m <package>.definitions`."""

import dagster as dg

from .assets import order_summary, raw_orders
from .jobs import example_job, example_schedule
from .sensors import inbox_sensor

defs = dg.Definitions(
    assets=[raw_orders, order_summary],
    jobs=[example_job],
    schedules=[example_schedule],
    sensors=[inbox_sensor],
)

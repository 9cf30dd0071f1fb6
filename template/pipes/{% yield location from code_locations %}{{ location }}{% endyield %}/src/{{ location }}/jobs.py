"""The example job and the schedule that runs it."""

import dagster as dg

example_job = dg.define_asset_job(
    name="example_job",
    selection=dg.AssetSelection.groups("example"),
    description="Materialize the example assets.",
)

# Stopped until you switch it on in the UI (Automation > example_schedule).
example_schedule = dg.ScheduleDefinition(
    name="example_schedule",
    job=example_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

"""A sensor that requests a run of the example job for each new file in an inbox.

The inbox is a directory on the shared data volume (INBOX_DIR, by default
/var/lib/dagster/inbox). Each file name and modification time is requested once.
"""

import os
from pathlib import Path

import dagster as dg

from .jobs import example_job

DEFAULT_INBOX = "/var/lib/dagster/inbox"


@dg.sensor(
    job=example_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def inbox_sensor(context: dg.SensorEvaluationContext):
    inbox = Path(os.environ.get("INBOX_DIR", DEFAULT_INBOX))
    if not inbox.is_dir():
        return dg.SkipReason(f"{inbox} does not exist")
    requests = [
        dg.RunRequest(
            run_key=f"{path.name}:{path.stat().st_mtime_ns}",
            tags={"inbox/file": path.name},
        )
        for path in sorted(inbox.iterdir())
        if path.is_file()
    ]
    return requests or dg.SkipReason(f"no files in {inbox}")

"""Load a rendered config/dagster.yaml with Dagster's own instance-config validation.

Usage: python check_instance_config.py DAGSTER_YAML...   (run in a Dagster venv)
Validates the file against Dagster's instance schema, then each configurable class's
config (run launcher, coordinator, compute logs, artifact storage) against that class's
own schema, without connecting anywhere. The files are config/dagster.yaml of rendered
projects, and the instance that the Helm chart renders from deploy/helm/values.yaml
(helm_chart.chart_instance), whose K8sRunLauncher needs dagster-k8s in the venv.
"""

import importlib
import os
import shutil
import sys
import tempfile

from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

os.environ.update(
    DAGSTER_PG_HOST="db.invalid",
    DAGSTER_PG_PORT="5432",
    DAGSTER_PG_USER="user",
    DAGSTER_PG_PASSWORD="password",
    DAGSTER_PG_DB="dagster",
    # compute_logs=s3 (.env's DAGSTER_S3_*, as compose.yaml passes them)
    DAGSTER_S3_ENDPOINT_URL="https://s3.us-east-1.amazonaws.com",
    DAGSTER_S3_BUCKET="bucket",
    DAGSTER_S3_PREFIX="dagster/compute-logs",
)


def check(path: str) -> str | None:
    with tempfile.TemporaryDirectory() as home:
        shutil.copy(path, os.path.join(home, "dagster.yaml"))
        config, _ = dagster_instance_config(home)
    for key in ("run_launcher", "run_coordinator", "compute_logs", "local_artifact_storage"):
        section = config.get(key)
        if section is None:  # left to Dagster's default
            continue
        cls = getattr(importlib.import_module(section["module"]), section["class"])
        result = process_config(cls.config_type(), section.get("config") or {})
        if not result.success:
            return f"{key} ({section['class']}): {[error.message for error in result.errors]}"
    print(
        f"ok: {path}: " + ", ".join(f"{k}={config[k]['class']}" for k in ("run_launcher", "run_coordinator"))
    )
    return None


failures = [f"{path}: {error}" for path in sys.argv[1:] if (error := check(path))]
sys.exit("\n".join(failures) if failures else 0)

"""Step logs (compute_logs, issue 33): a local S3 API for the stacks under test, a job of the
user's code that prints a marker, and what the UI shows of its step logs.

The S3 API is moto's server (PyPI moto[server]), started on this host on all addresses; the
containers reach it at this host's own address (`host_address`), as they would reach a MinIO or
any S3-compatible store on the network. The UI's step logs are the GraphQL `capturedLogs` of the
run's LOGS_CAPTURED event's file key, which the UI's log pane asks for.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from launchpad_dev.local_registry import free_port

MARKER_OUT, MARKER_ERR = "launchpad-step-logs-marker-stdout", "launchpad-step-logs-marker-stderr"
MARKER_JOB_NAME = "step_logs_marker"
# Appended to a code location's definitions.py (the user's own code, as a user adds a job).
MARKER_JOB = f'''

@dg.op
def print_marker() -> None:
    import sys

    print("{MARKER_OUT}", flush=True)
    print("{MARKER_ERR}", file=sys.stderr, flush=True)


@dg.job
def {MARKER_JOB_NAME}():
    print_marker()


defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[{MARKER_JOB_NAME}]))
'''
CAPTURED = """query ($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection {
  events { __typename ... on LogsCapturedEvent { fileKey } ... on MessageEvent { message } } } } }"""
LOGS = """query ($key: [String!]!) { capturedLogs(logKey: $key) { stdout stderr } }"""
# What Dagster's run worker logs when the upload of the step logs fails (the run goes on).
UPLOAD_FAILED = "Exception while cleaning up compute log capture"


def host_address() -> str:
    """This host's address on its default route (no packet is sent): what a container reaches
    this host at, through the engine's network address translation."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: any routable address serves
        return probe.getsockname()[0]


def add_marker_job(root: Path, location: str) -> None:
    definitions = root / "pipes" / location / "src" / location / "definitions.py"
    definitions.write_text(definitions.read_text() + MARKER_JOB)


class S3Server:
    """moto's S3 server on this host (port `port`, every address), started and stopped at will;
    its buckets live as long as its process."""

    def __init__(self, bucket: str = "launchpad-step-logs", prefix: str = "dagster/compute-logs"):
        self.port, self.bucket, self.prefix, self.process = free_port(), bucket, prefix, None
        self.local = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"http://{host_address()}:{self.port}"  # the containers' URL

    def start(self, timeout: float = 60) -> None:
        moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        command = [moto, "-H", "0.0.0.0", "-p", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                requests.get(self.local, timeout=2)
                break
            except requests.RequestException:
                assert self.process.poll() is None, f"moto_server exited with {self.process.returncode}"
                assert time.monotonic() < deadline, f"moto_server did not answer on {self.local}"
                time.sleep(0.2)
        self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.local, region_name="us-east-1",
            aws_access_key_id="launchpad", aws_secret_access_key="launchpad",
        )  # fmt: skip

    def objects(self, run_id: str) -> dict[str, bytes]:
        """Every object of a run's step logs (where S3ComputeLogManager puts them under the
        prefix of `settings`): key -> content."""
        client = self.client()
        prefix = f"{self.prefix}/storage/{run_id}/"
        found = client.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: client.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read() for o in found}

    def settings(self, secret_key: str) -> dict[str, str]:
        """The .env settings of a project that stores its step logs here."""
        return {
            "DAGSTER_S3_ENDPOINT_URL": self.endpoint,
            "DAGSTER_S3_BUCKET": self.bucket,
            "DAGSTER_S3_PREFIX": self.prefix,
            "DAGSTER_S3_ACCESS_KEY_ID": "launchpad-test",
            "DAGSTER_S3_SECRET_ACCESS_KEY": secret_key,
        }

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def step_logs(stack, run_id: str) -> tuple[dict, list[str]]:
    """The run's step logs as the UI asks for them: the whole GraphQL answer of capturedLogs
    (data and errors, with `status`, the HTTP status: the webserver answers a resolver's error
    with 500 and the errors in the body) for the key of its LOGS_CAPTURED event, and the run's
    event messages."""
    events = stack.gql(CAPTURED, id=run_id)["logsForRun"]["events"]
    keys = [e["fileKey"] for e in events if e["__typename"] == "LogsCapturedEvent"]
    assert keys, f"no LOGS_CAPTURED event in run {run_id}"
    messages = [e.get("message") or "" for e in events]
    response = requests.post(
        f"{stack.url}/graphql",
        json={"query": LOGS, "variables": {"key": [run_id, "compute_logs", keys[0]]}},
        auth=stack.auth, verify=stack.verify, timeout=120,
    )  # fmt: skip
    return {**response.json(), "status": response.status_code}, messages


def check_marker(stack, run_id: str) -> None:
    """The UI shows both markers in the run's step logs."""
    answer, _ = step_logs(stack, run_id)
    assert answer["status"] == 200 and not answer.get("errors"), answer
    logs = answer["data"]["capturedLogs"]
    assert MARKER_OUT in (logs["stdout"] or "") and MARKER_ERR in (logs["stderr"] or ""), logs

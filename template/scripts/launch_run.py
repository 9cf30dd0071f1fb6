#!/usr/bin/env python3
"""Launch a job through the Dagster UI's GraphQL API and wait for the run to end.

    python3 scripts/launch_run.py --url http://127.0.0.1:3000 --location NAME --job example_job

Prints the run's id and each status it passes through; exits 0 when the run ends in SUCCESS,
1 otherwise (its last events are printed). Used by the Kubernetes job of the CI workflow
(docs/kubernetes.md); it works against any Dagster webserver. Standard library only.
"""

import argparse
import sys
import time

from wait_ready import graphql

LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
  }
}"""

STATUS = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      eventConnection(afterCursor: null) {
        events { __typename ... on MessageEvent { message } }
      }
    }
  }
}"""

ENDED = {"SUCCESS", "FAILURE", "CANCELED"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the webserver, e.g. http://127.0.0.1:3000")
    parser.add_argument("--location", required=True, help="the code location's name in the UI")
    parser.add_argument("--job", required=True)
    parser.add_argument("--repository", default="__repository__")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")
    args = parser.parse_args()
    selector = {
        "repositoryLocationName": args.location,
        "repositoryName": args.repository,
        "jobName": args.job,
    }
    result = graphql(args.url, LAUNCH, {"params": {"selector": selector, "runConfigData": {}}})
    launched = result["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        print(f"error: the run was not launched: {launched}", file=sys.stderr)
        return 1
    run_id = launched["run"]["runId"]
    print(f"run {run_id}: launched ({args.location}, {args.job})")
    deadline = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < deadline:
        run = graphql(args.url, STATUS, {"runId": run_id})["runOrError"]
        status = run.get("status")
        if status != last:
            print(f"run {run_id}: {status}")
            last = status
        if status in ENDED:
            if status == "SUCCESS":
                return 0
            for event in run["eventConnection"]["events"][-20:]:
                print(f"  {event['__typename']}: {event.get('message', '')}", file=sys.stderr)
            return 1
        time.sleep(2)
    print(
        f"error: run {run_id} had not ended after {args.timeout:.0f} s (last status {last})",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())

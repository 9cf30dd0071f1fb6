"""Talking to a running stack from the host, with Dagster's own GraphQL client."""

from __future__ import annotations

import base64
import json
import ssl
import time

import requests
import requests.auth
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient
from gql.transport.requests import RequestsHTTPTransport

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus updatedTimestamp
  locationOrLoadError { __typename ... on PythonError { message causes { message } } } } } } }"""
REPOSITORY = """query ($loc: String!) { repositoryOrError(repositorySelector:
  {repositoryLocationName: $loc, repositoryName: "__repository__"}) {
  __typename ... on Repository { jobs { name } schedules { name } sensors { name }
  assetNodes { assetKey { path } } } ... on PythonError { message } } }"""
RUN = """query ($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId status
  tags { key value } stats { __typename ... on RunStatsSnapshot { materializations } } } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId status } } } }"""
RUNS_BY_ID = """query ($ids: [String!]) { runsOrError(filter: {runIds: $ids}) { ... on Runs {
  results { runId status startTime endTime tags { key value } } } } }"""
START_SCHEDULE = """mutation ($loc: String!, $name: String!) { startSchedule(scheduleSelector:
  {repositoryLocationName: $loc, repositoryName: "__repository__", scheduleName: $name}) {
  __typename ... on PythonError { message } } }"""
SCHEDULE_STATUS = """query ($loc: String!, $name: String!) { scheduleOrError(scheduleSelector:
  {repositoryLocationName: $loc, repositoryName: "__repository__", scheduleName: $name}) {
  ... on Schedule { scheduleState { status } } } }"""
MATERIALIZATIONS = """query ($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations { runId } } } }"""
RUN_LOGS = """query ($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection {
  events { __typename ... on MessageEvent { message level } } } } }"""
STEP_EVENTS = """query ($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection {
  events { __typename ... on MessageEvent { timestamp stepKey } } } } }"""
DAEMONS = """{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"""
START_SENSOR = """mutation ($loc: String!, $name: String!) { startSensor(sensorSelector:
  {repositoryLocationName: $loc, repositoryName: "__repository__", sensorName: $name}) {
  __typename ... on PythonError { message } } }"""
SENSOR_TICKS = """query ($loc: String!, $name: String!) { sensorOrError(sensorSelector:
  {repositoryLocationName: $loc, repositoryName: "__repository__", sensorName: $name}) {
  __typename ... on Error { message }
  ... on Sensor { sensorState { status ticks(limit: 10) { status runIds skipReason
  error { message } } } } } }"""


# The subscription the UI's run page keeps open for a run's live event log.
RUN_LOGS_LIVE = """subscription ($runId: ID!) { pipelineRunLogs(runId: $runId) { __typename
  ... on PipelineRunLogsSubscriptionSuccess { messages { __typename } }
  ... on PipelineRunLogsSubscriptionFailure { message } } }"""
RUN_ENDS = {"RunSuccessEvent", "RunFailureEvent", "RunCanceledEvent"}


def live_run_events(
    url: str,
    run_id: str,
    auth: tuple[str, str] | None = None,
    verify: str | bool = True,
    timeout: float = 180,
) -> list[list[str]]:
    """A run's events as the UI's run page receives them: the `pipelineRunLogs` subscription
    over a websocket on /graphql (the graphql-ws protocol, as dagster-webserver speaks it),
    with basic authentication and a CA file for a proxy in front, read until the run's end
    event. Returns the event type names of each data message, in order (the first holds the
    events so far; the later ones arrived live)."""
    from websockets.sync.client import connect

    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    address = url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/graphql"
    deadline = time.monotonic() + timeout
    received: list[list[str]] = []
    with connect(
        address,
        subprotocols=["graphql-ws"],
        additional_headers=headers,
        ssl=context,
        proxy=None,
        open_timeout=30,
    ) as socket:
        socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "start",
                    "payload": {"query": RUN_LOGS_LIVE, "variables": {"runId": run_id}},
                }
            )
        )
        while time.monotonic() < deadline:
            message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message["type"] in ("connection_ack", "ka"):
                continue
            if message["type"] != "data":
                raise RuntimeError(f"subscription to {run_id}'s events: {message}")
            payload = message["payload"]
            if payload.get("errors"):
                raise RuntimeError(f"subscription to {run_id}'s events: {payload['errors']}")
            logs = payload["data"]["pipelineRunLogs"]
            if logs["__typename"] != "PipelineRunLogsSubscriptionSuccess":
                raise RuntimeError(f"subscription to {run_id}'s events: {logs}")
            received.append([event["__typename"] for event in logs["messages"]])
            if RUN_ENDS & set(received[-1]):
                return received
    raise TimeoutError(f"no end event of {run_id} within {timeout} s over the websocket: {received}")


class NotReady(RuntimeError):
    """The webserver answered with an error type where a value was asked for (for now)."""


class Stack:
    """One running stack's UI, as seen from the host: by default the webserver's own port
    (http); with `url` another base URL, e.g. the login proxy's (https), with `auth` (a
    (user, password) pair for HTTP basic authentication) and `verify` (a CA file to check its
    certificate with)."""

    def __init__(
        self,
        port: int,
        location: str,
        url: str | None = None,
        auth: tuple[str, str] | None = None,
        verify: str | bool = True,
    ):
        self.url = url or f"http://127.0.0.1:{port}"
        self.location = location
        self.auth = auth
        self.verify = verify
        transport = None
        if url:  # the client's own transport knows neither basic authentication nor a CA file
            transport = RequestsHTTPTransport(
                url=f"{self.url}/graphql",
                auth=requests.auth.HTTPBasicAuth(*auth) if auth else None,
                verify=verify,
                timeout=300,
            )
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port, transport=transport)

    def post(self, query: str, **variables) -> dict:
        """The webserver's whole answer to a GraphQL query: data and errors."""
        response = requests.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            timeout=60,
            auth=self.auth,
            verify=self.verify,
        )
        response.raise_for_status()
        return response.json()

    def gql(self, query: str, **variables) -> dict:
        body = self.post(query, **variables)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def wait_loaded(self, timeout: float = 180, after: float = 0.0, poll: float = 0.5) -> float:
        """Poll real readiness (the location's load status), not container health; with `after`
        (a time.time()), until the location was also loaded again since then. Polls every
        `poll` s (benchmarks/run.py times with it: 0.1)."""
        started = time.monotonic()
        last = None
        while time.monotonic() - started < timeout:
            try:  # not up yet: connection refused, 502, partial workspace
                entries = self.gql(LOCATIONS)["workspaceOrError"]["locationEntries"]
                last = next(e for e in entries if e["name"] == self.location)
                if (
                    last["loadStatus"] == "LOADED"
                    and last["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                    and last["updatedTimestamp"] > after
                ):
                    return time.monotonic() - started
            except (requests.RequestException, StopIteration, KeyError, TypeError) as exc:
                last = repr(exc)
            time.sleep(poll)
        raise AssertionError(f"code location {self.location} not loaded within {timeout} s: {last}")

    def repository(self) -> dict:
        repo = self.gql(REPOSITORY, loc=self.location)["repositoryOrError"]
        assert repo["__typename"] == "Repository", repo
        return repo

    def asset_keys(self) -> set[str]:
        return {"/".join(n["assetKey"]["path"]) for n in self.repository()["assetNodes"]}

    def launch(
        self, job: str = "example_job", tags: dict | None = None, run_config: dict | None = None
    ) -> str:
        return self.client.submit_job_execution(
            job,
            repository_location_name=self.location,
            # The repository that dg.Definitions makes: named, as jobs of the same name may
            # exist in other code locations.
            repository_name="__repository__",
            tags=tags,
            run_config=run_config,
        )

    def location_error(self) -> str | None:
        """The code location's load error message, or None when it is loaded."""
        entries = self.gql(LOCATIONS)["workspaceOrError"]["locationEntries"]
        entry = next(e for e in entries if e["name"] == self.location)
        error = entry["locationOrLoadError"] or {}
        if error.get("__typename") != "PythonError":
            return None
        return "\n".join([error["message"], *(c["message"] for c in error.get("causes") or [])])

    def runs_by_id(self, run_ids: list[str]) -> list[dict]:
        return self.gql(RUNS_BY_ID, ids=run_ids)["runsOrError"]["results"]

    def start_schedule(self, name: str) -> str:
        return self.gql(START_SCHEDULE, loc=self.location, name=name)["startSchedule"]["__typename"]

    def schedule_status(self, name: str) -> str:
        return self.gql(SCHEDULE_STATUS, loc=self.location, name=name)["scheduleOrError"]["scheduleState"][
            "status"
        ]

    def materializations(self, asset: str) -> int:
        """How many materializations the asset `asset` ("prefix/name") has."""
        asset_node = self.gql(MATERIALIZATIONS, key={"path": asset.split("/")})["assetOrError"]
        return len(asset_node.get("assetMaterializations") or [])

    def wait_run(self, run_id: str, timeout: float = 300, on_poll=None) -> DagsterRunStatus:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            status = self.client.get_run_status(run_id)
            if status in FINISHED:
                return status
            if on_poll:
                on_poll()
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish within {timeout} s (last: {status})")

    def run(self, run_id: str) -> dict:
        run = self.gql(RUN, id=run_id)["runOrError"]
        assert run["__typename"] == "Run", run
        return run

    def errors(self, run_id: str) -> list[str]:
        """The run's ERROR and CRITICAL event messages (to explain a failure)."""
        logs = self.gql(RUN_LOGS, id=run_id)["logsForRun"]
        events = logs.get("events", [])
        return [e["message"] for e in events if e.get("level") in ("ERROR", "CRITICAL")]

    def step_times(self, run_id: str) -> dict[str, tuple[float, float | None]]:
        """step key -> (STEP_START, STEP_SUCCESS or STEP_FAILURE) of a run's steps, in seconds
        since the epoch, from its event log (None: the step has not ended)."""
        logs = self.gql(STEP_EVENTS, id=run_id)["logsForRun"]
        assert logs["__typename"] == "EventConnection", logs
        times: dict[str, list] = {}
        for event in logs["events"]:
            kind, key = event["__typename"], event.get("stepKey")
            if kind == "ExecutionStepStartEvent":
                times.setdefault(key, [None, None])[0] = int(event["timestamp"]) / 1000
            elif kind in ("ExecutionStepSuccessEvent", "ExecutionStepFailureEvent"):
                times.setdefault(key, [None, None])[1] = int(event["timestamp"]) / 1000
        return {key: (start, end) for key, (start, end) in times.items()}

    def run_ids(self) -> set[str]:
        return {r["runId"] for r in self.gql(RUNS)["runsOrError"]["results"]}

    def daemons(self) -> dict[str, bool]:
        statuses = self.gql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {d["daemonType"]: d["healthy"] for d in statuses if d["required"]}

    def start_sensor(self, name: str) -> str:
        """Switch a sensor on; returns the result's type ("Sensor" when it worked)."""
        return self.gql(START_SENSOR, loc=self.location, name=name)["startSensor"]["__typename"]

    def sensor_ticks(self, name: str) -> list[dict]:
        """The sensor's last ticks. While the webserver has not got the sensor (e.g. it is
        fetching the location again), the answer is an error type: NotReady carries it."""
        found = self.gql(SENSOR_TICKS, loc=self.location, name=name)["sensorOrError"]
        if found["__typename"] != "Sensor":
            raise NotReady(f"{found['__typename']}: {found.get('message')}")
        return found["sensorState"]["ticks"]

    def reload(self) -> None:
        self.client.reload_repository_location(self.location)

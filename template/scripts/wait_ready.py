#!/usr/bin/env python3
"""Wait until the Dagster UI answers and the code locations are loaded.

Used by `make up` (waits, asking the webserver to retry a location that failed to
load because its code server came up after it) and `make reload` (reloads the code
locations and reports the result: an error in the code fails at once, while a code server
that is briefly unreachable, as it is while it restarts its process, is retried).
Every location named with --location is waited for; a failure names its location.
Standard library only.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

LOCATIONS = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message causes { message } } }
      }
    }
    ... on PythonError { message }
  }
}"""

# Errors that mean "the code server is not answering yet", not "the code is broken".
UNREACHABLE = ("DagsterUserCodeUnreachableError", "UNAVAILABLE")

RELOAD = """
mutation ($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on PythonError { message }
    ... on RepositoryLocationNotFound { message }
    ... on UnauthorizedError { message }
  }
}"""


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise RuntimeError(payload["errors"])
    return payload["data"]


def wait_for_server(url: str, deadline: float) -> dict:
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.25)
    raise TimeoutError(f"the webserver at {url} did not answer ({last})")


def location_entries(url: str) -> dict[str, dict]:
    workspace = graphql(url, LOCATIONS)["workspaceOrError"]
    if workspace["__typename"] != "Workspace":
        raise RuntimeError(workspace.get("message", workspace["__typename"]))
    return {e["name"]: e for e in workspace["locationEntries"]}


def reload_location(url: str, name: str) -> None:
    result = graphql(url, RELOAD, {"name": name})["reloadRepositoryLocation"]
    if result["__typename"] != "WorkspaceLocationEntry":
        raise RuntimeError(result.get("message", result["__typename"]))


def loaded(url: str, entry: dict, reload: bool, deadline: float, retried: dict) -> bool:
    """Whether the location of `entry` is loaded; raises when it failed for good."""
    name = entry["name"]
    kind = (entry["locationOrLoadError"] or {}).get("__typename")
    if entry["loadStatus"] == "LOADED" and kind == "RepositoryLocation":
        return True
    if entry["loadStatus"] == "LOADED" and kind == "PythonError":
        failure = entry["locationOrLoadError"]
        # The cause (a SyntaxError, an ImportError, ...) is what to fix: show it too.
        causes = [c["message"].strip() for c in failure.get("causes") or []]
        error = "\n".join([failure["message"].strip(), *causes])
        unreachable = any(marker in error for marker in UNREACHABLE)
        if (reload and not unreachable) or time.monotonic() >= deadline:
            raise RuntimeError(f"code location {name!r} failed to load:\n{error}")
        if time.monotonic() - retried[name] >= (1 if unreachable else 5):
            # The code server was not answering (starting, or restarting): retry.
            reload_location(url, name)
            retried[name] = time.monotonic()
    if time.monotonic() >= deadline:
        raise TimeoutError(f"code location {name!r} is still {entry['loadStatus']}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the UI's base URL")
    parser.add_argument(
        "--location", required=True, action="append", help="code location name (repeat for more)"
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds (default 180)")
    parser.add_argument("--reload", action="store_true", help="reload the locations once")
    parser.add_argument("--shown-url", default="", help="the UI's address to print, if not --url")
    args = parser.parse_args()

    start = time.monotonic()
    deadline = start + args.timeout
    names = list(dict.fromkeys(args.location))
    try:
        wait_for_server(args.url, deadline)
        if args.reload:
            for name in names:
                reload_location(args.url, name)
        retried = dict.fromkeys(names, start)
        waiting = list(names)
        while waiting:
            entries = location_entries(args.url)
            missing = [name for name in waiting if name not in entries]
            if missing:
                raise RuntimeError(f"no code location named {missing[0]!r} in the workspace")
            waiting = [
                name
                for name in waiting
                if not loaded(args.url, entries[name], args.reload, deadline, retried)
            ]
            if waiting:
                time.sleep(0.1)  # a query the webserver answers from memory, in milliseconds
    except (RuntimeError, TimeoutError, urllib.error.URLError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - start
    which = ", ".join(repr(name) for name in names)
    print(
        f"Dagster UI ready at {args.shown_url or args.url} ({which} loaded after {seconds:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

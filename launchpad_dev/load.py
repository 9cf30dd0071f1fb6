"""A stack under load: what the fault tier (tests/test_faults.py) and the benchmark's --burst
(benchmarks/stress.py) share."""

from __future__ import annotations

# Added to a code location's definitions.py: slow_job (one op sleeping `seconds`: a run still
# going when its container is killed, or a queue that fills) and state_job (a counter in the
# location's state directory, $DAGSTER_LOCATION_DATA).
SLOW_JOB = '''

@dg.op(config_schema={"seconds": dg.Field(int, default_value=15)})
def nap(context) -> None:
    """Added by the fault tests: a run that is still going when its container is killed."""
    import time

    time.sleep(context.op_config["seconds"])


@dg.job
def slow_job() -> None:
    nap()



@dg.op
def count_in_state(context) -> int:
    """Added by the fault tests: a counter in the location's state directory."""
    import os
    from pathlib import Path

    state = Path(os.environ["DAGSTER_LOCATION_DATA"]) / "counter.txt"
    count = int(state.read_text()) + 1 if state.exists() else 1
    state.write_text(str(count))
    return count


@dg.job
def state_job() -> None:
    count_in_state()


defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[slow_job, state_job]))
'''


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most runs executing at once, from their (start, end) times."""
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1])
    )
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak

"""--fuzz-long [N]: the answer fuzzer with N answer sets (default 10,000; CI keeps its 2,000).

    .venv/bin/python benchmarks/run.py --fuzz-long [N]

Runs the fuzz tier's own test (tests/test_fuzz.py) in one pytest process, with
LAUNCHPAD_FUZZ_EXAMPLES=N, and LAUNCHPAD_FUZZ_REPORT naming a file where the test writes its
counts: answer sets rendered and checked, refused (per question, and per reason: the
validator's message with the answer it quotes left out), and seconds per set. The property is
the test's: a set that breaks it fails the test, and this mode exits 1 with the test's output
in the JSON. No container engine is needed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launchpad_dev.bench_failures import one_line
from launchpad_dev.common import ROOT

TEST = "tests/test_fuzz.py::test_fuzzed_answers_are_refused_by_name_or_render_a_sound_project"


def main(count: int, json_path: Path, log) -> int:
    report: dict = {
        "mode": "fuzz_long",
        "answer_sets_asked": count,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    log(f"fuzz: {count:,} answer sets (tests/test_fuzz.py, one process)")
    with tempfile.TemporaryDirectory(prefix="lpbench-fuzz-") as tmp:
        counts = Path(tmp) / "fuzz.json"
        env = {**os.environ, "LAUNCHPAD_FUZZ_EXAMPLES": str(count), "LAUNCHPAD_FUZZ_REPORT": str(counts)}
        command = [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-q", TEST]
        began = time.monotonic()
        try:
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        except KeyboardInterrupt:
            report["interrupted"] = True
            result = None
        figures = json.loads(counts.read_text()) if counts.is_file() else {}
    figures["wall_s"] = round(time.monotonic() - began, 1)
    if result is not None and result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        figures.update(
            failed=True,
            step=f"pytest {TEST}",
            error=one_line(f"the fuzz test failed ({result.returncode}): " + " ".join(output[-40:])),
            output_tail=output[-200:],
        )
    report["fuzz"] = figures
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"JSON written to {json_path}")
    print(table(figures), flush=True)
    if report.get("interrupted"):
        return 130
    return 1 if figures.get("failed") else 0


def table(figures: dict) -> str:
    lines = ["== fuzz =="]
    if "answer_sets" in figures:
        accepted = figures["rendered_hostile_accepted"]
        lines.append(
            f"{figures['answer_sets']:,} answer sets in {figures['wall_s']} s: "
            f"{figures['rendered']:,} rendered and checked "
            f"({accepted:,} with a hostile-looking answer accepted), "
            f"{figures['refused']:,} refused; {figures['seconds_per_rendered']} s per rendered set, "
            f"{figures['seconds_per_refused']} s per refused set"
        )
        lines.append(
            "refused, by question: "
            + ", ".join(f"{q} {n}" for q, n in figures["refused_by_question"].items())
        )
        for reason, n in list(figures["refused_by_reason"].items())[:15]:
            lines.append(f"{n:>7}  {reason}")
    if figures.get("failed"):
        lines.append(f"  FAILED: {figures['error'][:1500]}")
    return "\n".join(lines)

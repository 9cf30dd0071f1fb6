"""Scrapes of a Prometheus text-format endpoint (the metrics service's), read with
prometheus-client's own parser."""

from __future__ import annotations

import subprocess

import requests
from prometheus_client.parser import text_string_to_metric_families

from launchpad_dev.tools import require_tool

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def url_in(output: str) -> str:
    """The address `make metrics-url` printed (its one line that is a URL; make -C adds its
    own lines around it)."""
    urls = [line for line in output.splitlines() if line.startswith("http://")]
    assert len(urls) == 1, output
    return urls[0]


def scrape(url: str, timeout: float = 30) -> Samples:
    """{sample name: {sorted (label, value) pairs: value}} of one GET of `url`. The text must
    be what Prometheus accepts: `promtool check metrics` (its own parser and linter) reads it
    first (bash .ci/run installs promtool)."""
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    checked = subprocess.run(
        [require_tool("promtool"), "check", "metrics"],
        input=response.text, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, f"promtool check metrics: {checked.stdout}{checked.stderr}"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly these labels, or None if there is none."""
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include these (0 if none)."""
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= set(key))

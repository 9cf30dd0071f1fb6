"""launchpad_dev: the helpers of the template repository's own tests, benchmarks and tools.

Dagster Launchpad is a Copier template, not a Python package; this package is what its
development code shares, installed with the test extra (`pip install -e '.[test]'`, as .ci/run
and the CI jobs do) and importable from the repository's root without it. It is never part of
a generated project. tests/, benchmarks/ and tools/ import from here, and nothing here imports
from them: no sys.path or sys.modules edits, no import cycle (tests/test_repository.py).

- matrix: the answer matrix, derived from copier.yml;
- common: the repository's paths, the template snapshot and its computed answers, the run's
  summary figures, running a command;
- selection: which tests a run selects (LAUNCHPAD_SHARD, _ENGINES, _BASES) and each test's
  engine (the xdist groups of tests/conftest.py);
- fast_copier: Copier rendering the same template many times, faster;
- engines, dagster_api, browser, local_registry, tools: the container engines, a running
  stack's GraphQL API, the UI in a browser, a registry on 127.0.0.1, the tools the tests need;
- helm_chart, workflow_lint: the official Dagster chart's checks, the workflow linters;
- publish, signing, oci_registry: publishing the platform images (the release workflow's
  matrix, build, push, cosign-format signatures and attestations), a small registry client;
- load: the jobs a stack under load runs (the fault tier's and the benchmark's);
- bench, bench_failures: what benchmarks/run.py and its modes share (the layouts, the host's
  measurements) and how a failing layout is recorded.
"""

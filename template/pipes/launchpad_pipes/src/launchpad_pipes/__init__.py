"""What every code location of this project shares, installed into each one's pipes image.

- defaults.py: `with_defaults(defs)`, what every location runs with (executor, IO manager);
- io_manager.py: the IO manager that writes each value whole;
- recover_runs.py: the image's process (`python3 -m launchpad_pipes.recover_runs`): serves the
  location, fails the runs a previous container left behind, and is the health check.

Nothing is imported here: the health check (`-m launchpad_pipes.recover_runs`) stays free of
Dagster's import.
"""

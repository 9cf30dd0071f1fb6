"""Where the assets' values are stored: Dagster's default, pickle files on the shared data
volume (<instance storage directory>/<asset key>, the same paths), but each written whole.

Dagster's default filesystem IO manager writes a value into its file in place. Runs of the same
job at once (the run queue starts up to max_concurrent_runs together; a schedule and a click in
the UI) then race: a step can read an input while another run is rewriting it, and fail on
half a file ("Ran out of input"). Here each value is written to a new file beside its path and
renamed over it (os.replace, atomic within one filesystem): a reader sees the previous value or
the new one, never a part. The last run to finish wins, as before.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any

import dagster as dg
from upath import UPath


class AtomicPickleIOManager(dg.UPathIOManager):
    extension = ""  # Dagster's default: no suffix, so values stored before are still read

    def dump_to_path(self, context: dg.OutputContext | None, obj: Any, path: UPath) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                pickle.dump(obj, file, pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise

    def load_from_path(self, context: dg.InputContext | None, path: UPath) -> Any:
        with path.open("rb") as file:
            return pickle.load(file)


class AtomicFilesystemIOManager(dg.ConfigurableIOManagerFactory):
    """Every code location's `io_manager` (defaults.py): base_dir, or the instance's storage
    directory."""

    base_dir: str | None = None

    def create_io_manager(self, context: dg.InitResourceContext) -> AtomicPickleIOManager:
        base_dir = self.base_dir or context.instance.storage_directory()
        return AtomicPickleIOManager(base_path=UPath(base_dir))

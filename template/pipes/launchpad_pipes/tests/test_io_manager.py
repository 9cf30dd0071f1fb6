"""Values are written whole: a run reading an input never sees part of it, even while another
run of the same job rewrites it."""

import threading

from upath import UPath

from launchpad_pipes.io_manager import AtomicPickleIOManager


def test_a_value_is_read_whole_while_another_run_rewrites_it(tmp_path):
    manager = AtomicPickleIOManager(base_path=UPath(tmp_path))
    path = UPath(tmp_path) / "raw_orders"
    values = [[n] * 50_000 for n in range(2)]  # pickles of 100 kB, written in many pieces
    manager.dump_to_path(None, values[0], path)
    rewritten = threading.Event()

    def rewrite() -> None:
        for n in range(20):
            manager.dump_to_path(None, values[n % 2], path)
        rewritten.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads = 0
    while not rewritten.is_set():
        assert manager.load_from_path(None, path) in values  # half a file raises here
        reads += 1
    writer.join()
    assert reads > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw_orders"]  # no temporary file left

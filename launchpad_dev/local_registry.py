"""A container registry on 127.0.0.1 for the tests: Debian's `docker-registry` (the CNCF
Distribution registry), plain HTTP. Engines treat a loopback registry as insecure only when
told to: Docker by default for 127.0.0.0/8, Podman with --tls-verify=false."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from launchpad_dev.tools import missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@contextmanager
def running_registry(root: Path) -> Iterator[str]:
    """A registry storing under `root` (its log in root/registry.log) while the block runs;
    yields its address, 127.0.0.1:PORT."""
    binary = shutil.which("docker-registry")
    if not binary:
        missing("docker-registry is not installed (apt-get install docker-registry; bash .ci/run does it)")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    # Its log goes to a file: it writes a line per refused request (every HEAD of a blob a push
    # has not sent yet, about 800 bytes), and a pipe that nobody reads while it runs fills after
    # some 80 of them and stops the registry (seen: a manifest push that hung for 20 minutes).
    log = root / "registry.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(f"http://127.0.0.1:{port}/v2/")
                break
            except OSError:
                assert process.poll() is None, (
                    f"docker-registry exited: {log.read_text(errors='replace')[-2000:]}"
                )
                assert time.monotonic() < deadline, "docker-registry did not answer within 30 s"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)

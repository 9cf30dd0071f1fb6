"""Install an exported lock into /opt/venv with uv, exactly: the image builds run this.

    python3 install_locked.py install REQUIREMENTS   (in an image build, as root)
    python3 install_locked.py uv UV ARGS...           (on the host: run uv with your index)

`install` brings uv from your package index (platform/requirements-uv.txt, its hashes
checked) into a temporary directory, installs REQUIREMENTS (an export of uv.lock, written by
`make lock`) with `uv pip sync --require-hashes --no-build`: every package at its locked
version, each file checked against its hash, no source build (the images carry no
compiler), nothing resolved and nothing else installed; bytecode is compiled. Then uv goes
again: it never reaches the image. The downloads are kept in a build cache mount.

A private package index (URL with credentials) goes in secrets/pip.conf, as for pip: the build
mounts it as a secret for this step only (never in a layer, the history or an ARG/ENV), and
its index-url and extra-index-url are passed to uv, which does not read pip.conf itself.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VENV = Path("/opt/venv")
PIP_CONF = Path("/run/secrets/pip_conf")
CACHE = Path("/var/cache/launchpad")
UV_REQUIREMENTS = Path(__file__).with_name("requirements-uv.txt")


def index_env(pip_conf: Path) -> dict[str, str]:
    """uv's settings for the package index named in a pip.conf (empty if it names none)."""
    if not pip_conf.is_file():
        return {}
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(pip_conf)
    env: dict[str, str] = {}
    for section in ("global", "install"):
        if not conf.has_section(section):
            continue
        for key in ("index-url", "index_url"):
            if conf.has_option(section, key):
                env["UV_DEFAULT_INDEX"] = conf.get(section, key).strip()
        for key in ("extra-index-url", "extra_index_url"):
            if conf.has_option(section, key):
                env["UV_INDEX"] = " ".join(conf.get(section, key).split())
        if conf.has_option(section, "cert"):
            env["SSL_CERT_FILE"] = conf.get(section, "cert").strip()
    return env


def install(requirements: str) -> int:
    env = dict(os.environ)
    env.update(
        PIP_CACHE_DIR=str(CACHE / "pip"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_CACHE_DIR=str(CACHE / "uv"),
        UV_LINK_MODE="copy",
        UV_PYTHON_DOWNLOADS="never",
        # The system's CA certificates, as pip uses them (and a TLS-inspecting proxy needs).
        UV_SYSTEM_CERTS="1",
        UV_NO_PROGRESS="1",
    )
    if PIP_CONF.is_file():
        env["PIP_CONFIG_FILE"] = str(PIP_CONF)
        env.update(index_env(PIP_CONF))
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)], check=True)
    with tempfile.TemporaryDirectory(prefix="uv-") as tools:
        subprocess.run([sys.executable, "-m", "venv", tools], check=True)
        pip = [f"{tools}/bin/python", "-m", "pip", "install", "--quiet", "--require-hashes"]
        subprocess.run([*pip, "--no-deps", "-r", str(UV_REQUIREMENTS)], env=env, check=True)
        sync = [
            f"{tools}/bin/uv", "pip", "sync", "--python", str(VENV / "bin" / "python"),
            "--require-hashes", "--no-build", "--compile-bytecode", requirements,
        ]  # fmt: skip
        result = subprocess.run(sync, env=env)
    # The packages' own test suites are not needed at run time.
    for tests in sorted(VENV.glob("lib/python*/site-packages/**/tests")):
        shutil.rmtree(tests, ignore_errors=True)
    return result.returncode


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "install":
        return install(argv[1])
    if argv and argv[0] == "uv" and len(argv) > 2:
        env = dict(os.environ, **index_env(Path("secrets/pip.conf")))
        os.execvpe(argv[1], argv[1:], env)
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

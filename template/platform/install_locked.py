"""Install an exported lock into /opt/venv with uv, exactly: the image builds run this.

    python3 install_locked.py install REQUIREMENTS   (in an image build, as root)
    python3 install_locked.py fetch-uv DEST           (on the host: the pinned uv, as DEST)
    python3 install_locked.py uv UV ARGS...           (on the host: run uv with your index)

`install` brings uv from your package index (platform/requirements-uv.txt, its hashes
checked; the wheel is kept in the build cache, so it is downloaded once per machine and uv
version), installs REQUIREMENTS (an export of uv.lock, written by `make lock`) with
`uv pip sync --require-hashes --no-build`: every package at its locked version, each file
checked against its hash, no source build (the images carry no compiler), nothing resolved
and nothing else installed, nothing removed afterwards; bytecode is compiled. A wheel kept in
the project (pipes/NAME/wheels/, named by its path in the lock) is installed from the copy the
image holds at /opt/dagster/pipes/NAME/wheels/. uv runs from the build cache mount (its
binary kept beside the wheel, checked against the wheel's RECORD each time) and never reaches
the image; the downloads are kept in the build cache mount too.

A private package index (URL with credentials) goes in secrets/pip.conf, as for pip: the build
mounts it as a secret for this step only (never in a layer, the history or an ARG/ENV), and
its index-url and extra-index-url are passed to uv, which does not read pip.conf itself.

`fetch-uv` does on the host what `install` does for its own uv: the wheel, fetched with pip
(your usual pip configuration, then secrets/pip.conf) and kept in ~/.cache/dagster-launchpad
(or $XDG_CACHE_HOME), is checked against requirements-uv.txt and its uv binary copied to
DEST: one download per machine and uv version, whatever the number of projects.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from base64 import urlsafe_b64encode
from pathlib import Path

VENV = Path("/opt/venv")
PIP_CONF = Path("/run/secrets/pip_conf")
CACHE = Path("/var/cache/launchpad")
# Where the images keep the project's vendored wheels (pipes/NAME/wheels/ at the same path).
VENDORED_ROOT = Path("/opt/dagster")
UV_REQUIREMENTS = Path(__file__).with_name("requirements-uv.txt")
# Run by every Python of the virtualenv as it starts (site's .pth files): NAME from the file
# that NAME_FILE names under /run/secrets/ (compose's secrets), unless NAME is set. The images'
# processes, their health checks and whatever you `exec` in a container so read the PostgreSQL
# password (DAGSTER_PG_PASSWORD_FILE) without it being an environment value of the container.
SECRETS_PTH = (
    "import os; [os.environ.setdefault(k[:-5], open(v).read()) for k, v in list(os.environ.items())"
    " if k.endswith('_FILE') and v.startswith('/run/secrets/') and os.path.isfile(v)]\n"
)


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


def uv_binary(env: dict[str, str], tmp: str, cache: Path = CACHE) -> Path:
    """uv from its wheel, which is checked against the hashes in requirements-uv.txt each time.
    The wheel is fetched with pip the first time (into `tmp`) and kept in `cache` (in builds:
    the build cache mount) with its unpacked binary, so later steps and builds skip the
    download and the unzipping."""
    text = UV_REQUIREMENTS.read_text()
    hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", text))
    libc = "-".join(filter(None, platform.libc_ver())) or "musl"  # ("", "") on musl
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    kept = cache / "uv-wheel" / f"{key}-{sysconfig.get_platform()}-{libc}"

    def verified() -> Path | None:
        for wheel in kept.glob("uv-*.whl"):
            if hashlib.sha256(wheel.read_bytes()).hexdigest() in hashes:
                return wheel
            wheel.unlink()  # not one of the locked wheels: fetch again
        return None

    wheel = verified()
    if wheel is None:
        pip = [sys.executable, "-m", "pip"]
        if subprocess.run([*pip, "--version"], capture_output=True).returncode != 0:
            # A base image without pip: a throwaway virtualenv brings one.
            subprocess.run([sys.executable, "-m", "venv", f"{tmp}/venv"], check=True)
            pip = [f"{tmp}/venv/bin/python", "-m", "pip"]
        download = [
            *pip, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--dest", f"{tmp}/wheel", "-r", str(UV_REQUIREMENTS),
        ]  # fmt: skip
        subprocess.run(download, env=env, check=True)
        (fetched,) = Path(tmp, "wheel").glob("uv-*.whl")
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fetched, kept / f".{fetched.name}.{os.getpid()}")
        os.replace(kept / f".{fetched.name}.{os.getpid()}", kept / fetched.name)  # atomic
        wheel = verified()
        if wheel is None:
            sys.exit(f"{fetched.name}: its hash is not in {UV_REQUIREMENTS}")
    # The binary is kept beside its wheel too, and checked against the wheel's RECORD (which
    # the wheel's own hash vouches for) each time: unzipping it costs more than hashing it.
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".data/scripts/uv")]
        (record,) = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD")]
        (digest,) = [
            line.split(",")[1].removeprefix("sha256=")
            for line in archive.read(record).decode().splitlines()
            if line.split(",")[0] == member
        ]
        uv = kept / "uv"
        found = hashlib.sha256(uv.read_bytes()).digest() if uv.is_file() else b""
        if urlsafe_b64encode(found).decode().rstrip("=") != digest:
            partial = kept / f".uv.{os.getpid()}"
            partial.write_bytes(archive.read(member))
            partial.chmod(0o755)
            os.replace(partial, uv)  # atomic: a parallel build sees the old or the new file
    return uv


def install(requirements: str) -> int:
    env = dict(os.environ)
    env.update(
        PIP_CACHE_DIR=str(CACHE / "pip"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_ROOT_USER_ACTION="ignore",
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
        purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
        site = subprocess.run(
            [str(VENV / "bin" / "python"), "-c", purelib],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        Path(site, "launchpad_secrets.pth").write_text(SECRETS_PTH)
    with tempfile.TemporaryDirectory(prefix="uv-") as tmp:
        sync = [
            str(uv_binary(env, tmp)), "pip", "sync", "--python", str(VENV / "bin" / "python"),
            "--require-hashes", "--no-build", "--compile-bytecode", requirements,
        ]  # fmt: skip
        # From /opt/dagster: a wheel you keep in pipes/NAME/wheels/ is named in the export by its
        # path from the project root (./pipes/NAME/wheels/...), and the image has it there.
        result = subprocess.run(sync, env=env, cwd=VENDORED_ROOT)
    # Every installed file is kept: libraries keep what they need at run time in directories of
    # any name (dbt's macros live in dbt/include/.../tests/), so nothing is pruned on a guess.
    return result.returncode


def fetch_uv(dest: str) -> int:
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dagster-launchpad"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    if Path("secrets/pip.conf").is_file():  # read after (over) your usual pip configuration
        env["PIP_CONFIG_FILE"] = str(Path("secrets/pip.conf").resolve())
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="uv-") as tmp:
        shutil.copyfile(uv_binary(env, tmp, home), f"{dest}.partial")
    os.chmod(f"{dest}.partial", 0o755)
    os.replace(f"{dest}.partial", dest)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "install":
        return install(argv[1])
    if len(argv) == 2 and argv[0] == "fetch-uv":
        return fetch_uv(argv[1])
    if argv and argv[0] == "uv" and len(argv) > 2:
        env = dict(os.environ, **index_env(Path("secrets/pip.conf")))
        os.execvpe(argv[1], argv[1:], env)
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

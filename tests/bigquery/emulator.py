"""A local BigQuery emulator (`bqemulator` from PyPI) for the tests, in a virtualenv of its own.

Its pins (duckdb 1.5.5, ...) clash with ours, so it never enters the project's environment:
the first run creates `~/.cache/activation/bqemulator-<version>-venv` with uv (about 20 s),
later runs reuse it. DuckDB's spatial extension, which the emulator loads at start, comes
from PyPI too (`duckdb-extension-spatial`) and is installed under the virtualenv's own HOME,
so nothing is downloaded from DuckDB's extension site and the user's ~/.duckdb is untouched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VERSION = "1.4.0"
# The emulator's own pins: duckdb and its spatial extension must be the same release;
# numpy is needed by its built-in UDFs but not declared.
REQUIREMENTS = [f"bqemulator=={VERSION}", "duckdb==1.5.5", "duckdb-extension-spatial==1.5.5", "numpy"]
PROJECT = "local-project"


class EmulatorUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Emulator:
    project: str
    rest: str  # http://127.0.0.1:PORT
    grpc: str  # 127.0.0.1:PORT (Storage Read API, plain gRPC)
    process: subprocess.Popen


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "activation"


def _run(args: list[str], env: dict | None = None) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise EmulatorUnavailable(f"{' '.join(args[:4])} ... failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def ensure_venv() -> Path:
    """The emulator's virtualenv, created once and reused (a lock keeps parallel sessions apart)."""
    venv = cache_dir() / f"bqemulator-{VERSION}-venv"
    ready = venv / ".activation-ready-compiled"  # bytecode compiled at install: see below
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"bqemulator-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names its own binary in $UV
        python = venv / "bin" / "python"
        if uv:
            _run([uv, "venv", "--quiet", "--python", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv)])
            # Compiled at install: with PYTHONDONTWRITEBYTECODE set, every start would compile it again.
            _run([uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(python), *REQUIREMENTS])
        else:
            _run([sys.executable, "-m", "venv", str(venv)])
            _run([str(python), "-m", "pip", "install", "--quiet", "--compile", *REQUIREMENTS])
        # Install the spatial extension from the wheel's file into the venv's own HOME.
        (venv / "home").mkdir()
        _run(
            [
                str(python),
                "-c",
                "import duckdb, duckdb_extension_spatial, pathlib; "
                "p = pathlib.Path(duckdb_extension_spatial.__file__).parent / 'extensions' / "
                "f'v{duckdb.__version__}' / 'spatial.duckdb_extension'; "
                "duckdb.connect().execute(f\"INSTALL '{p}'\")",
            ],
            env={**os.environ, "HOME": str(venv / "home")},
        )
        ready.write_text(VERSION)
    return venv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(log_path: Path, timeout: float = 60.0) -> Emulator:
    """Start the emulator on free ports of 127.0.0.1 and wait until it answers."""
    venv = ensure_venv()
    rest_port, grpc_port = _free_port(), _free_port()
    log = open(log_path, "w")  # noqa: SIM115 - the server writes to it until it stops
    process = subprocess.Popen(
        [
            str(venv / "bin" / "bqemulator"),
            "start",
            "--rest-host",
            "127.0.0.1",
            "--rest-port",
            str(rest_port),
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(grpc_port),
            "--project",
            PROJECT,
            "--log-level",
            "warning",
        ],  # fmt: skip
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOME": str(venv / "home")},
    )
    rest = f"http://127.0.0.1:{rest_port}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise EmulatorUnavailable(f"bqemulator exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{rest}/bigquery/v2/projects/{PROJECT}/datasets", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(process)
            raise EmulatorUnavailable(f"bqemulator did not answer on {rest} within {timeout:.0f} s")
        time.sleep(0.2)
    return Emulator(project=PROJECT, rest=rest, grpc=f"127.0.0.1:{grpc_port}", process=process)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

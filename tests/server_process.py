"""`qledger serve` as a real subprocess on a free loopback port, for tests that kill it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class ServerProcess:
    """`python -m api.cli serve` over `db`, with the log key in `log_key_file`.

    Started in its own process group, so that SIGKILL reaches uvicorn's workers too."""

    def __init__(self, db: str, log_key_file: Path, *, workers: int = 1,
                 log: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.db, self.log_key_file, self.workers = db, log_key_file, workers
        self.log = log
        self.env = dict(env or {})  # on top of the defaults below
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.port = free_port()
        # Tests load the server from one address: no rate limits unless a test sets them.
        env = {**os.environ, "PYTHONPATH": str(ROOT), "QLEDGER_LOG_KEY": str(self.log_key_file),
               "QLEDGER_READ_RATE_PER_MINUTE": "0", "QLEDGER_WRITE_RATE_PER_MINUTE": "0",
               **self.env}
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--db", self.db, "--port", str(self.port),
             "--workers", str(self.workers)],
            cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"qledger serve exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/v1/checkpoint", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("qledger serve did not answer in time")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

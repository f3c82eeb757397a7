"""``audian-fax mirror`` as a subprocess: started, probed over its /healthz, killed, stopped.

Every wait polls observable state (the health document, the output file, the process) against a
deadline; nothing sleeps for a fixed time to let something happen.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

__all__ = ["MirrorProcess", "free_port", "poll"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(check: Callable[[], bool], what: str, timeout: float = 30.0, interval: float = 0.02) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds, saying what never happened."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class MirrorProcess:
    """One ``audian-fax mirror DEST --port PORT --json ...`` process; each start logs to new files."""

    def __init__(self, dest: Path, *, base_url: str, key: str, port: int, args: tuple[str, ...] = ()) -> None:
        self.dest, self.port, self.args = dest, port, args
        self.env = {**os.environ, "AUDIAN_API_KEY": key, "AUDIAN_BASE_URL": base_url}
        self.env.pop("AUDIAN_LOG", None)
        self.logs = dest.parent / f"{dest.name}-logs-{port}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.http = httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.runs += 1
        command = [sys.executable, "-m", "audian_fax_async.cli", "mirror", str(self.dest), "--port", str(self.port)]
        with (
            (self.logs / f"out-{self.runs}.jsonl").open("wb") as out,
            (self.logs / f"err-{self.runs}.log").open("wb") as err,
        ):
            self.process = subprocess.Popen(
                [*command, "--json", "--status-every", "3600", *self.args], env=self.env, stdout=out, stderr=err
            )

    def health(self) -> tuple[int, dict[str, Any]] | None:
        """The /healthz status and document, or None while nothing answers."""
        try:
            answer = self.http.get("/healthz")
        except httpx2.HTTPError:
            return None
        return answer.status_code, answer.json()

    def wait_running(self, timeout: float = 30.0) -> None:
        def running() -> bool:
            self.check_alive()
            got = self.health()
            return got is not None and got[1]["status"] == "running"

        poll(running, f"the mirror on port {self.port} to run", timeout)

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        def caught_up() -> bool:
            self.check_alive()
            got = self.health()
            return got is not None and got[1]["last_sweep"] is not None

        poll(caught_up, f"the mirror on port {self.port} to catch up", timeout)

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the mirror exited with {self.process.returncode}:\n{self.stderr()[-3000:]}")

    def events(self) -> list[dict[str, Any]]:
        """Every JSON line every run of this mirror printed."""
        found: list[dict[str, Any]] = []
        for run in range(1, self.runs + 1):
            for line in (self.logs / f"out-{run}.jsonl").read_text().splitlines():
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue  # a line a SIGKILL cut
        return found

    def downloaded(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == "downloaded"]

    def stderr(self) -> str:
        return "\n".join((self.logs / f"err-{run}.log").read_text() for run in range(1, self.runs + 1))

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self.http.close()

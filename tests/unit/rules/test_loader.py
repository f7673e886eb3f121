"""Rule files: strict YAML, errors that name the rule and the file, folders in name order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from duoli.errors import RuleError
from rules import load_rules, parse_rules

VALID = {
    "id": "burst",
    "description": "many transactions in an hour",
    "expression": "tx_count_1h >= 6",
    "severity": "medium",
    "action": "review",
    "mode": "active",
    "version": 1,
}


def rules_yaml(*rules: dict[str, Any]) -> str:
    return yaml.safe_dump({"rules": list(rules)}, sort_keys=False, allow_unicode=True)


def rule(**overrides: Any) -> dict[str, Any]:
    return {**VALID, **overrides}


def test_parse_rules_builds_rules_with_defaults() -> None:
    ruleset = parse_rules(rules_yaml(rule(), rule(id="late", applies_to="repayment")))
    assert [(r.id, r.applies_to, r.kind) for r in ruleset.rules] == [
        ("burst", "transaction", "fraud"),
        ("late", "repayment", "fraud"),
    ]


@pytest.mark.parametrize("key", ["id", "description", "expression", "severity", "action", "mode"])
def test_a_missing_key_is_refused(key: str) -> None:
    fields = rule(id="no-key" if key != "id" else "ignored")
    del fields[key]
    with pytest.raises(RuleError, match=f"missing key '{key}'") as info:
        parse_rules(rules_yaml(fields), source="team.yaml")
    assert info.value.rule_id == ("no-key" if key != "id" else "#1")
    assert "team.yaml" in str(info.value)


def test_an_unknown_key_is_refused_at_its_line() -> None:
    text = "rules:\n  - id: burst\n    severty: high\n"
    with pytest.raises(RuleError, match="unknown key 'severty' \\(did you mean 'severity'") as e:
        parse_rules(text, source="team.yaml")
    assert (e.value.rule_id, e.value.line, e.value.column) == ("burst", 3, 4)


def test_a_key_given_twice_is_refused() -> None:
    text = rules_yaml(rule()) + "  expression: amount > 1\n"
    with pytest.raises(RuleError, match="key 'expression' given twice"):
        parse_rules(text)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("severity", "urgent", "severity must be one of low, medium, high, critical"),
        ("action", "ban", "action must be one of"),
        ("mode", "on", "mode must be one of"),
        ("applies_to", "installment_due", "applies_to must be one of"),
        ("kind", "aml", "kind must be one of"),
        ("version", 0, "version must be a positive integer"),
        ("version", -1, "version must be a positive integer"),
        ("version", "2", "version must be a positive integer"),
        ("version", True, "version must be a positive integer"),
        ("description", 12, "description must be a non-empty string"),
    ],
)
def test_bad_values_are_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message) as info:
        parse_rules(rules_yaml(rule(**{field: value})))
    assert info.value.rule_id == "burst"


def test_a_bad_value_points_at_its_line() -> None:
    text = rules_yaml(rule(severity="urgent"))
    with pytest.raises(RuleError) as info:
        parse_rules(text)
    assert text.splitlines()[info.value.line - 1].strip() == "severity: urgent"


def test_duplicate_ids_in_one_file_are_refused() -> None:
    with pytest.raises(RuleError, match="duplicate rule id") as info:
        parse_rules(rules_yaml(rule(), rule(expression="amount > 1")))
    assert info.value.rule_id == "burst"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [\n", "invalid YAML"),
        ("rules:\n  - id: a\n   bad: indent\n", "invalid YAML"),
        ("", "a rule file is a mapping"),
        ("- id: burst\n", "a rule file is a mapping"),
        ("rule:\n  - id: burst\n", "unknown top-level key 'rule'"),
        ("{}\n", "needs a 'rules' key"),
        ("rules: burst\n", "'rules' must be a list"),
        ("rules:\n  - burst\n", "a rule must be a mapping"),
    ],
)
def test_malformed_files_are_refused_naming_the_source(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message) as info:
        parse_rules(text, source="team.yaml")
    assert "team.yaml" in f"{info.value.rule_id} {info.value}"


def test_invalid_yaml_reports_the_position() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules("rules:\n  - id: a\n    x: [1, 2\n", source="team.yaml")
    assert info.value.rule_id == "team.yaml"
    assert info.value.line > 1


def test_an_empty_rules_list_is_an_empty_ruleset() -> None:
    assert parse_rules("rules:\n").rules == ()
    assert parse_rules("rules: []\n").rules == ()


def test_an_expression_error_keeps_its_position_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "velocity.yaml"
    path.write_text(rules_yaml(rule(), rule(id="typo", expression="amount > 1 and tx_cont_1h")))
    with pytest.raises(RuleError, match="unknown feature 'tx_cont_1h'") as info:
        load_rules(path)
    assert (info.value.rule_id, info.value.line, info.value.column) == ("typo", 1, 15)
    assert "velocity.yaml" in str(info.value)


def test_a_folder_loads_yaml_and_yml_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(rules_yaml(rule(id="second")))
    (tmp_path / "a.yaml").write_text(rules_yaml(rule(id="first")))
    (tmp_path / "notes.md").write_text("not rules")
    assert [r.id for r in load_rules(tmp_path).rules] == ["first", "second"]
    assert [r.id for r in load_rules(str(tmp_path / "b.yml")).rules] == ["second"]


def test_duplicate_ids_across_files_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(rules_yaml(rule()))
    (tmp_path / "b.yaml").write_text(rules_yaml(rule(id="other"), rule(severity="low")))
    with pytest.raises(RuleError, match="duplicate rule id") as info:
        load_rules(tmp_path)
    assert info.value.rule_id == "burst"
    assert "a.yaml" in str(info.value)
    assert "b.yaml" in str(info.value)


def test_version_is_the_same_whichever_file_holds_which_rule(tmp_path: Path) -> None:
    one, two = rule(id="one"), rule(id="two", expression="amount > 5")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "a.yaml").write_text(rules_yaml(one))
    (first / "b.yaml").write_text(rules_yaml(two))
    (second / "a.yaml").write_text(rules_yaml(two))
    (second / "b.yaml").write_text(rules_yaml(one))
    assert load_rules(first).version == load_rules(second).version
    (second / "b.yaml").write_text(rules_yaml(rule(id="one", mode="shadow")))
    assert load_rules(first).version != load_rules(second).version


@pytest.mark.parametrize("name", ["missing", "empty"])
def test_a_path_without_rule_files_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuleError, match=r"no such rule file|no \.yaml or \.yml rule files"):
        load_rules(tmp_path / name)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"rules:\n  - id: caf\xe9\n")
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(path)

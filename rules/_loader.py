"""Reading analysts' rule files: strict YAML in, a compiled :class:`RuleSet` out.

A file holds ``rules:`` followed by a list of mappings. Anything doubtful (a missing or
unknown key, a key given twice, a bad value, an id used twice in a folder) is refused
with a :class:`RuleError` naming the rule and the file: a rule that silently does
something else than the analyst meant is worse than a failed deploy.

Positions: for a structural fault, ``line`` and ``column`` point into the file; for a
fault in an expression, they point into the expression (line 1, column 0 is its start).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import yaml

from duoli.errors import RuleError
from rules._engine import Rule, RuleSet, rule_problem

__all__ = ["RULE_SUFFIXES", "load_rules", "parse_rules"]

RULE_SUFFIXES: Final = (".yaml", ".yml")
_KEYS: Final = tuple(f.name for f in fields(Rule))
_REQUIRED: Final = tuple(f.name for f in fields(Rule) if f.name not in ("applies_to", "kind"))


@dataclass(frozen=True, slots=True)
class _Located:
    """A rule read from a file, with where it came from for error messages."""

    rule: Rule
    source: str
    line: int


def load_rules(path: Path | str) -> RuleSet:
    """Load a rule file, or every ``*.yaml`` / ``*.yml`` file of a folder in name order."""
    located: list[_Located] = []
    for file in _rule_files(Path(path)):
        located.extend(_parse_file(_read(file), str(file)))
    return _rule_set(located)


def parse_rules(text: str, source: str = "<string>") -> RuleSet:
    """Parse rules from YAML text; ``source`` names it in error messages."""
    return _rule_set(list(_parse_file(text, source)))


def _rule_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RuleError(str(path), "no such rule file or folder")
    files = sorted(p for p in path.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file())
    if not files:
        raise RuleError(str(path), f"no {' or '.join(RULE_SUFFIXES)} rule files in the folder")
    return files


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(str(file), f"cannot read the rule file: {exc}") from exc


def _rule_set(located: list[_Located]) -> RuleSet:
    first: dict[str, _Located] = {}
    for item in located:
        earlier = first.setdefault(item.rule.id, item)
        if earlier is not item:
            message = f"duplicate rule id, first defined in {earlier.source}:{earlier.line}"
            raise RuleError(item.rule.id, f"{message} (in {item.source})", item.line)
    sources = {item.rule.id: f"{item.source}, rule at line {item.line}" for item in located}
    return RuleSet((item.rule for item in located), sources=sources)


def _parse_file(text: str, source: str) -> Iterator[_Located]:
    node, data = _load_yaml(text, source)
    items, sequence = _rule_list(node, data, source)
    for index, (item, item_node) in enumerate(zip(items, sequence.value, strict=True)):
        yield _parse_rule(item, item_node, index, source)


def _load_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """One pass giving both the data and its nodes: the nodes carry the line numbers."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column) if mark is not None else (1, 0)
        raise RuleError(source, f"invalid YAML: {_yaml_problem(exc)}", line, column) from exc
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    return str(problem) if problem else str(exc).splitlines()[0]


def _rule_list(node: yaml.Node | None, data: Any, source: str) -> tuple[list[Any], yaml.Node]:
    """The ``rules:`` list and its node; ``rules:`` with nothing after it is an empty list."""
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise RuleError(source, "a rule file is a mapping with one key, 'rules'")
    extra = sorted(str(key) for key in data if key != "rules")
    if extra:
        raise RuleError(source, f"unknown top-level key {extra[0]!r}", *_mark(node))
    if "rules" not in data:
        raise RuleError(source, "a rule file needs a 'rules' key", *_mark(node))
    value_node = next(v for k, v in node.value if k.value == "rules")
    rules = data["rules"]
    if rules is None:
        return [], yaml.SequenceNode("tag:yaml.org,2002:seq", [])
    if not isinstance(rules, list) or not isinstance(value_node, yaml.SequenceNode):
        raise RuleError(source, "'rules' must be a list of rules", *_mark(value_node))
    return rules, value_node


def _parse_rule(item: Any, node: yaml.Node, index: int, source: str) -> _Located:
    rule_id = _rule_id(item, index)
    line = _mark(node)[0]

    def refuse(message: str, at: yaml.Node = node) -> RuleError:
        return RuleError(rule_id, f"{message} (in {source})", *_mark(at))

    if not isinstance(item, dict) or not isinstance(node, yaml.MappingNode):
        raise refuse("a rule must be a mapping of keys to values")
    _check_keys(node, refuse)
    missing = [key for key in _REQUIRED if key not in item]
    if missing:
        raise refuse(f"missing key {missing[0]!r}")
    problem = rule_problem({**_defaults(), **item})
    if problem is not None:
        raise refuse(problem, _value_node(node, problem))
    return _Located(Rule(**item), source, line)


def _check_keys(node: yaml.MappingNode, refuse: Callable[[str, yaml.Node], RuleError]) -> None:
    seen: set[str] = set()
    for key_node, _ in node.value:
        key = key_node.value
        if key not in _KEYS:
            raise refuse(f"unknown key {key!r}{_suggest(str(key))}", key_node)
        if key in seen:
            raise refuse(f"key {key!r} given twice", key_node)
        seen.add(key)


def _rule_id(item: Any, index: int) -> str:
    """The rule's id, or its position in the file when the id itself is unusable."""
    rule_id = item.get("id") if isinstance(item, dict) else None
    return rule_id if isinstance(rule_id, str) and rule_id else f"#{index + 1}"


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(Rule) if f.name in ("applies_to", "kind")}


def _value_node(node: yaml.MappingNode, problem: str) -> yaml.Node:
    """The node of the key a problem is about (problems start with the key's name)."""
    for key_node, value_node in node.value:
        if problem.startswith(f"{key_node.value} "):
            return value_node
    return node


def _mark(node: yaml.Node) -> tuple[int, int]:
    mark = node.start_mark
    return (mark.line + 1, mark.column) if mark is not None else (1, 0)


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, _KEYS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

"""Rule evaluation cost: 50 active transaction rules over real feature dicts.

The baseline is the same 50 expressions as plain Python lambdas (``lambda f: f["amount"]
> 0``), compiled by Python with no allow-list, no guards and no per-rule ``try``: what
the expressions cost by themselves, so the ratio is the price of the rule engine's safety
and bookkeeping.
"""

from __future__ import annotations

import ast
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from duoli.account import AccountState, apply_event
from duoli.catalog import KNOWN_NAMES
from duoli.events import Transaction, parse_event
from duoli.features import transaction_features
from duoli.simulate import SimulationConfig, simulate
from rules import LIBRARY_DIR, Rule, RuleSet, load_rules

__all__ = ["feature_dicts", "fifty_rules", "plain_lambdas", "rules_section", "time_best"]

RULE_COUNT = 50
REPEATS = 5
BOOK = SimulationConfig(seed=11, accounts=400, days=30)
_FUNCTIONS: dict[str, Any] = {
    "__builtins__": {},
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "log": math.log,
    "sqrt": math.sqrt,
}

Facts = dict[str, Any]


def fifty_rules(library: Iterable[Rule], count: int = RULE_COUNT) -> RuleSet:
    """The library's transaction rules, repeated under new ids until ``count``, all active."""
    base = [rule for rule in library if rule.applies_to == "transaction"]
    if not base:
        raise ValueError("the rule library has no transaction rules")
    copies = (
        replace(rule, id=f"{rule.id}.{n}", mode="active")
        for n in range(math.ceil(count / len(base)))
        for rule in base
    )
    return RuleSet(list(copies)[:count])


def feature_dicts(events: Iterable[dict[str, Any]]) -> list[Facts]:
    """Every transaction's features, computed before it is applied (as the engine does)."""
    states: dict[str, AccountState] = {}
    dicts = []
    for raw in events:
        event = parse_event(json.dumps(raw))
        state = states.get(event.account_id)
        if state is None:
            state = states[event.account_id] = AccountState.fresh(event.account_id, 5000.0, 0.18)
        if isinstance(event, Transaction):
            dicts.append(transaction_features(state, event))
        apply_event(state, event)
    return dicts


class _Subscripts(ast.NodeTransformer):
    """``amount`` becomes ``f["amount"]``: the fastest honest way to read a fact."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id not in KNOWN_NAMES:
            return node
        read = ast.Subscript(ast.Name("f", ast.Load()), ast.Constant(node.id), ast.Load())
        return ast.copy_location(read, node)


def plain_lambda(expression: str) -> Callable[[Facts], Any]:
    """One expression as ``lambda f: ...``, with no checks at all.

    >>> plain_lambda("amount >= max(2000, 0.5 * credit_limit)")({"amount": 2500.0,
    ...     "credit_limit": 8000.0})
    False
    """
    body = _Subscripts().visit(ast.parse(expression.strip(), mode="eval").body)
    args = ast.arguments(posonlyargs=[], args=[ast.arg("f")], kwonlyargs=[], kw_defaults=[],
                         defaults=[])  # fmt: skip
    tree = ast.fix_missing_locations(ast.Expression(ast.Lambda(args, body)))
    function: Callable[[Facts], Any] = eval(compile(tree, "<plain>", "eval"), _FUNCTIONS)
    return function


def plain_lambdas(ruleset: RuleSet) -> list[Callable[[Facts], Any]]:
    return [plain_lambda(rule.expression) for rule in ruleset.rules]


def time_best(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Best wall time of ``repeats`` runs, in seconds: the least disturbed by neighbours."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def _run_ruleset(ruleset: RuleSet, dicts: Sequence[Facts]) -> Callable[[], int]:
    def run() -> int:
        return sum(len(ruleset.evaluate(facts, "transaction").hits) for facts in dicts)

    return run


def _run_lambdas(
    functions: Sequence[Callable[[Facts], Any]], dicts: Sequence[Facts]
) -> Callable[[], int]:
    def run() -> int:
        return sum(len([fn for fn in functions if fn(facts)]) for facts in dicts)

    return run


def _events(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    return simulate(config)


def rules_section(config: SimulationConfig = BOOK, repeats: int = REPEATS) -> dict[str, Any]:
    """Microseconds per rule per event, for the rule engine and for plain lambdas."""
    ruleset = fifty_rules(load_rules(LIBRARY_DIR).rules)
    functions = plain_lambdas(ruleset)
    dicts = feature_dicts(_events(config))
    engine_run, plain_run = _run_ruleset(ruleset, dicts), _run_lambdas(functions, dicts)
    hits, plain_hits = engine_run(), plain_run()
    errors = sum(len(ruleset.evaluate(facts).errors) for facts in dicts)
    evaluations = len(dicts) * len(functions)
    return {
        "rules": len(functions),
        "events": len(dicts),
        "hits": hits,
        "baseline_hits": plain_hits,
        "rule_errors": errors,
        "repeats": repeats,
        "us_per_rule_event": time_best(engine_run, repeats) / evaluations * 1e6,
        "baseline_us_per_rule_event": time_best(plain_run, repeats) / evaluations * 1e6,
    }

"""Analyst rules: a safe expression language, its engine, and the rule files that use it.

Rules are data, never code: an expression can read the event's fields and features named
in :mod:`duoli.catalog`, call a handful of math functions and test membership of the
analysts' named lists with ``value in list("name")``, nothing else.

Examples
--------
>>> ruleset = parse_rules('''
... rules:
...   - id: velocity-burst-1h
...     description: six or more transactions in an hour
...     expression: tx_count_1h >= 6 and amount >= 100
...     severity: medium
...     action: review
...     mode: active
...     version: 1
...   - id: card-testing
...     description: small probes, then a big purchase
...     expression: small_tx_count_1h >= 3 and amount >= 500
...     severity: high
...     action: block
...     mode: shadow
...     version: 2
... ''')
>>> evaluation = ruleset.evaluate({"tx_count_1h": 7, "small_tx_count_1h": 4, "amount": 800.0})
>>> [(hit.rule_id, hit.mode) for hit in evaluation.hits]
[('velocity-burst-1h', 'active'), ('card-testing', 'shadow')]
>>> ruleset.evaluate({"tx_count_1h": 7, "small_tx_count_1h": 0, "amount": 0}).hits
()
>>> ruleset.evaluate({"tx_count_1h": 1, "amount": 5.0}).errors
(('card-testing', "NameError: name 'small_tx_count_1h' is not defined"),)

Named lists are read as of the event's time (see :class:`rules.control.NamedList`):

>>> from rules.control import NamedList
>>> blocked = parse_rules('''
... rules:
...   - id: blocked-merchant
...     description: the merchant is on the blocked list
...     expression: merchant_id in list("blocked_merchants")
...     severity: high
...     action: block
...     mode: active
...     version: 1
... ''')
>>> lists = {"blocked_merchants": NamedList("blocked_merchants", "merchant", {"m-9": 100.0})}
>>> [hit.rule_id for hit in blocked.evaluate({"merchant_id": "m-9"}, lists=lists, at=50.0).hits]
['blocked-merchant']
>>> blocked.evaluate({"merchant_id": "m-9"}, lists=lists, at=150.0).hits  # expired by then
()
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from rules._engine import Evaluation, Rule, RuleHit, RuleSet
from rules._language import ALLOWED_FUNCTIONS, Membership, compile_expression
from rules._loader import load_rules, parse_rules

__all__ = [
    "ALLOWED_FUNCTIONS",
    "LIBRARY_DIR",
    "Evaluation",
    "Membership",
    "Rule",
    "RuleHit",
    "RuleSet",
    "compile_expression",
    "load_rules",
    "parse_rules",
]

LIBRARY_DIR: Final = Path(__file__).parent / "library"
"""The starter rule library shipped with Duoli: ``load_rules(LIBRARY_DIR)``."""

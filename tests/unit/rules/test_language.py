"""The expression language refuses anything outside its allow-list and computes like Python."""

from __future__ import annotations

import ast
import keyword
import math
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duoli.catalog import KNOWN_NAMES
from duoli.errors import RuleError
from rules import ALLOWED_FUNCTIONS, _language, compile_expression

HOSTILE_FRAGMENTS = (
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "amount.__class__",
    "amount.real",
    "kind.upper()",
    "__import__('os')",
    "__import__('os').system('id')",
    "__builtins__",
    "__name__",
    "__debug__",
    "kind[0]",
    "(1, 2)[0]",
    "kind[::-1]",
    "lambda: 1",
    "(lambda: amount)()",
    "[x for x in (1, 2)]",
    "{x for x in (1, 2)}",
    "{x: 1 for x in (1, 2)}",
    "(x for x in (1, 2))",
    "(y := 1)",
    "eval('1')",
    "exec('1')",
    "open('/etc/passwd')",
    "getattr(amount, 'real')",
    "type(amount)",
    "globals()",
    "vars()",
    "compile('1', '', 'eval')",
    "breakpoint()",
    "print(amount)",
    "setattr(amount, 'x', 1)",
    "min(amount, key=abs)",
    "round(amount, ndigits=2)",
    "max(*(1, 2))",
    "max(**{'a': 1})",
    "amount ** 2",
    "2 ** 1000000",
    "f'{amount}'",
    "f'{amount.__class__}'",
    "max(1, 2)(3)",
    "min(amount, 1).__class__",
    "log(amount)(1)",
    "{'a': 1}",
    "b'x'",
    "1j",
    "...",
    "amount is None",
    "amount @ amount",
    "amount << 3",
    "amount & 1",
    "~amount",
    "foo",
    "amount_zcore",
    "os",
    "max",
    "sqrt",
    "'x' * 1000000000",
    "[0] * 1000000000",
    "'%999999999d' % 1",
    # named lists: one string literal, only as the right operand of in / not in
    "list",
    "list()",
    "list('a')",
    "list(merchant_id)",
    "list('a', 'b')",
    "list(name='a')",
    "list(*'a')",
    "list('a' + 'b')",
    "list(f'{kind}')",
    "list(1)",
    "list(list('a'))",
    "list('a').contains",
    "list('a')[0]",
    "list('a') == merchant_id",
    "list('a') in list('b')",
    "min(list('a'))",
    "len(list('a'))",
    "merchant_id in list(kind)",
    "merchant_id in list('a').entries",
    "merchant_id in list('a')[0]",
    "merchant_id in (list('a'),)",
)

TEMPLATES = (
    "{}",
    "amount > 0 and {}",
    "{} or tx_count_1h >= 6",
    "not {}",
    "-{}",
    "{} + 1 > amount",
    "min({}, 1)",
    "max(amount, {}) > 3",
    "abs({})",
    "{} if amount > 1 else 0",
    "amount if {} else 0",
    "0 if amount else {}",
    "({},)",
    "[amount, {}]",
    "{{amount, {}}}",
    "amount in ({}, 2)",
    "kind == 'x' and (amount < 5 or {})",
    "sqrt(log({}))",
)

NUMERIC_NAMES = (
    "amount",
    "tx_count_1h",
    "typical_amount",
    "amount_ratio",
    "credit_limit",
    "days_past_due",
)

unknown_names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda name: (
        name not in KNOWN_NAMES and name not in ALLOWED_FUNCTIONS and not keyword.iskeyword(name)
    )
)
dunder_names = st.from_regex(r"__[a-z]{1,10}__", fullmatch=True)
hostile_leaves = st.sampled_from(HOSTILE_FRAGMENTS) | unknown_names | dunder_names


def _splice(template: str, fragment: str) -> str:
    return template.format(f"({fragment})")


hostile_expressions = st.recursive(
    hostile_leaves,
    lambda inner: st.builds(_splice, st.sampled_from(TEMPLATES), inner),
    max_leaves=6,
)

numbers = st.integers(-1000, 1000) | st.floats(-1e4, 1e4, allow_nan=False)
leaves = st.sampled_from(NUMERIC_NAMES) | numbers.map(lambda n: f"({n!r})")


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.sampled_from(["+", "-", "*", "/", "//", "%", "<", "<=", "==", "!=", "and", "or"])
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, binary, inner),
        st.builds(lambda a: f"(-{a})", inner),
        st.builds(lambda a: f"(not {a})", inner),
        st.builds(lambda a: f"abs({a})", inner),
        st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["min", "max"]), inner, inner),
        st.builds(lambda a, c, b: f"({a} if {c} else {b})", inner, inner, inner),
    )


valid_expressions = st.recursive(leaves, _extend, max_leaves=12)
numeric_facts = st.fixed_dictionaries({name: numbers for name in NUMERIC_NAMES})

mixed_expressions = st.builds(
    lambda valid, op, hostile: f"({valid}) {op} ({hostile})",
    valid_expressions,
    st.sampled_from(["and", "or", "+", "<"]),
    hostile_expressions,
)


@settings(max_examples=400)
@given(expression=hostile_expressions | mixed_expressions)
def test_hostile_expressions_are_refused_before_compiling(expression: str) -> None:
    ast.parse(expression, mode="eval")  # valid Python: the refusal is the allow-list's
    never_compile = mock.patch.object(_language, "compile", side_effect=AssertionError, create=True)
    with never_compile, pytest.raises(RuleError) as info:
        compile_expression("hostile", expression)
    assert info.value.rule_id == "hostile"


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        return ("value", run())
    except Exception as exc:
        return ("raised", type(exc))


def _same(left: tuple[str, Any], right: tuple[str, Any]) -> bool:
    if left[0] == right[0] == "value" and isinstance(left[1], float) and math.isnan(left[1]):
        return isinstance(right[1], float) and math.isnan(right[1])
    return left == right


@given(expression=valid_expressions, facts=numeric_facts)
def test_valid_expressions_compute_like_python(expression: str, facts: dict[str, Any]) -> None:
    rule = compile_expression("valid", expression)
    reference = {"__builtins__": {}, "min": min, "max": max, "abs": abs}
    expected = _outcome(lambda: eval(expression, reference, dict(facts)))
    assert _same(_outcome(lambda: rule(facts)), expected)


@pytest.mark.parametrize(
    ("expression", "facts", "expected"),
    [
        ("kind in ('purchase', 'cash_withdrawal')", {"kind": "purchase"}, True),
        ("kind not in ['purchase']", {"kind": "purchase"}, False),
        ("city in {'上海', '北京'}", {"city": "上海"}, True),
        ("amount if kind == 'purchase' else 0", {"amount": 5, "kind": "purchase"}, 5),
        ("0 < utilisation <= 0.5", {"utilisation": 0.5}, True),
        ("-amount // 3 % 2", {"amount": 7}, 1),
        ("round(sqrt(amount) + log(amount, 10), 2)", {"amount": 100}, 12.0),
        ("2 * typical_amount", {"typical_amount": 4}, 8),
        ("60 * 60 + 0.5 * amount", {"amount": 2}, 3601.0),
        ("device_id == '' or is_new_device", {"device_id": "", "is_new_device": False}, True),
        (
            "merchant_category != None and not is_new_merchant",
            {
                "merchant_category": "x",
                "is_new_merchant": False,
            },
            True,
        ),
    ],
)
def test_allowed_forms_compile_and_run(
    expression: str, facts: dict[str, Any], expected: Any
) -> None:
    assert compile_expression("ok", expression)(facts) == expected


@pytest.mark.parametrize(
    ("expression", "facts", "expected"),
    [
        ('merchant_id in list("blocked_merchants")', {"merchant_id": "m-1"}, False),
        ('device_id not in list("bad_devices")', {"device_id": "d-1"}, True),
        ("amount > 5 and city in list('watched cities')", {"amount": 9, "city": "x"}, False),
        (
            'merchant_id in list("a") or city not in list("b")',
            {"merchant_id": "m", "city": "x"},
            True,
        ),
    ],
)
def test_list_membership_compiles_and_an_unknown_list_is_empty(
    expression: str, facts: dict[str, Any], expected: bool
) -> None:
    assert compile_expression("lists", expression)(facts) is expected


@pytest.mark.parametrize(
    ("expression", "column", "message"),
    [
        ("merchant_id in list(merchant_id)", 15, "exactly one list name in quotes"),
        ("merchant_id in list()", 15, "exactly one list name in quotes"),
        ('merchant_id in list("a", "b")', 15, "exactly one list name in quotes"),
        ("amount > 1 and list('a')", 15, "only be used after in or not in"),
        ("merchant_id in list", 15, "'list' can only be called"),
    ],
)
def test_a_misused_list_is_refused_with_its_position(
    expression: str, column: int, message: str
) -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("listy", expression)
    assert (info.value.rule_id, info.value.line, info.value.column) == ("listy", 1, column)
    assert message in str(info.value)


def test_error_names_rule_and_position_in_multiline_expression() -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("r1", "(amount > 0 and\n  kind.real == 'X')")
    assert (info.value.rule_id, info.value.line, info.value.column) == ("r1", 2, 2)
    assert str(info.value).startswith("rule 'r1', line 2, column 2: attribute access")


def test_unknown_name_is_reported_with_its_column_and_a_suggestion() -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("burst", "tx_count_1h >= 6 and tx_cnt_24h > 1")
    assert (info.value.line, info.value.column) == (1, 21)
    assert "unknown feature 'tx_cnt_24h' (did you mean 'tx_count_24h'?)" in str(info.value)


def test_columns_count_characters_not_utf8_bytes() -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("city", 'city == "上海" and foo')
    assert info.value.column == 17


def test_an_invalid_escape_is_refused_not_warned() -> None:
    with pytest.raises(RuleError, match="invalid escape sequence") as info:
        compile_expression("escape", 'merchant_id == "\\d1"')
    assert info.value.column == 15


def test_syntax_errors_carry_the_parser_position() -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("broken", "amount >= 5 and )")
    assert (info.value.rule_id, info.value.line, info.value.column) == ("broken", 1, 16)
    assert "syntax error" in str(info.value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("amount + " * 300 + "1", "longer than 2000"),
        ("-" * 150 + "amount", "nested deeper"),
        ("-" * 1999 + "amount", "longer than 2000"),
        ("-" * 1990 + "amount", "nested deeper"),
        ("amount ** 2", "** operator"),
        ("min(amount, key=abs)", "keyword arguments"),
        ("'x' * 3 == kind", "repeating or formatting"),
        ("", "syntax error"),
        ("amount\x00", "syntax error"),
    ],
)
def test_resource_and_form_limits(expression: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("limits", expression)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("expression", "facts", "error"),
    [
        ("kind * 1000000000 == ''", {"kind": "purchase"}, "repeating a string"),
        ("1000000000 * city == ''", {"city": "x"}, "repeating a string"),
        ("merchant_id % 1 == ''", {"merchant_id": "%999999999d"}, "string formatting"),
        ("round(amount, -1000000000) == 0", {"amount": 10}, "ndigits"),
    ],
)
def test_memory_bombs_through_facts_fail_fast(
    expression: str, facts: dict[str, Any], error: str
) -> None:
    rule = compile_expression("bomb", expression)
    with pytest.raises((TypeError, ValueError), match=error):
        rule(facts)


def test_a_fact_named_like_a_function_cannot_shadow_it() -> None:
    rule = compile_expression("shadow", "max(amount, 1)")
    assert rule({"amount": 5, "max": "not a function"}) == 5


def test_no_builtins_are_reachable_at_run_time() -> None:
    rule = compile_expression("names", "amount > 1")
    with pytest.raises(NameError):
        rule({})

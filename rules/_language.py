"""The rule expression language: Python syntax, cut down to an allow-list, compiled once.

An analyst's expression is parsed with :func:`ast.parse`, every node is checked against an
allow-list of node types, and only then is the tree compiled to a code object. A
tree-walking interpreter would be safe too, but it costs tens of microseconds per rule;
compiled code is evaluated at C speed with ``eval(code, globals, facts)``.

Safety rests on three things:

- the allow-list: no attributes, subscripts, lambdas, comprehensions, keyword arguments
  or any name outside :data:`duoli.catalog.KNOWN_NAMES`, so there is no path to an object's
  internals or to a builtin;
- named lists only as ``value in list("name")``: one string literal, on the right of ``in``
  or ``not in``; it runs as a membership test that exposes nothing else of the list;
- ``{"__builtins__": {}}``: even a name that slipped through finds no builtin;
- denial-of-service guards: no ``**``, a length and nesting limit, and multiplication and
  ``%`` routed through helpers that refuse to repeat or format strings and sequences
  (``kind * 10**9`` would otherwise allocate gigabytes).

>>> rule = compile_expression("burst", "tx_count_1h >= 6 and amount > 2 * min(typical_amount, 300)")
>>> rule({"tx_count_1h": 7, "amount": 500.0, "typical_amount": 120.0})
True

Lists come from :func:`list_globals`, as of the event's time (an unknown list is empty):

>>> code = compile_code("blocked", 'merchant_id in list("blocked_merchants")')
>>> uses_lists(code)
True
>>> class Blocked:
...     def contains(self, value, at):
...         return value == "m-9" and at < 100.0
>>> eval(code, list_globals({"blocked_merchants": Blocked()}, at=50.0), {"merchant_id": "m-9"})
True
>>> eval(code, list_globals({"blocked_merchants": Blocked()}, at=150.0), {"merchant_id": "m-9"})
False
>>> eval(code, EVAL_GLOBALS, {"merchant_id": "m-9"})
False
"""

from __future__ import annotations

import ast
import difflib
import math
import warnings
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any, Final, Protocol

from duoli.catalog import KNOWN_NAMES
from duoli.errors import RuleError

__all__ = [
    "ALLOWED_FUNCTIONS",
    "EVAL_GLOBALS",
    "LIST_FUNCTION",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "Membership",
    "compile_code",
    "compile_expression",
    "list_globals",
    "uses_lists",
]

MAX_EXPRESSION_LENGTH: Final = 2000
MAX_DEPTH: Final = 100
"""Deeper trees are refused: CPython's compiler recurses and would hit its own limit."""

_MAX_ROUND_DIGITS: Final = 30
_SEQUENCES: Final = (str, bytes, bytearray, tuple, list, set, frozenset, dict)


def _round(number: Any, ndigits: Any = None) -> Any:
    """``round`` without its slow corner: ``round(1, -10**9)`` builds ``10**(10**9)``."""
    if ndigits is not None and not -_MAX_ROUND_DIGITS <= ndigits <= _MAX_ROUND_DIGITS:
        raise ValueError(f"round() ndigits must be within ±{_MAX_ROUND_DIGITS}")
    return round(number, ndigits)


def _multiply(left: Any, right: Any) -> Any:
    """``*`` for numbers only: repeating a string or a list is a memory bomb."""
    if isinstance(left, _SEQUENCES) or isinstance(right, _SEQUENCES):
        raise TypeError("repeating a string or a sequence with * is not allowed")
    return left * right


def _modulo(left: Any, right: Any) -> Any:
    """``%`` for numbers only: ``'%999999999d' % 1`` is a memory bomb."""
    if isinstance(left, _SEQUENCES):
        raise TypeError("string formatting with % is not allowed")
    return left % right


ALLOWED_FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": _round,
    "log": math.log,
    "sqrt": math.sqrt,
}
"""The functions a rule may call, by the name the analyst writes."""

LIST_FUNCTION: Final = "list"
"""``list("name")``: an analyst's named list, only as the right operand of ``in``."""


class Membership(Protocol):
    """What a named list must answer: is ``value`` on it at event time ``at``."""

    def contains(self, value: Any, at: float) -> bool: ...


class _ListView:
    """One list as of one moment; ``in`` is all an expression can do with it."""

    __slots__ = ("_at", "_members")

    def __init__(self, members: Membership | None, at: float) -> None:
        self._members = members
        self._at = at

    def __contains__(self, value: Any) -> bool:
        return self._members is not None and self._members.contains(value, self._at)


class _ListLookup:
    __slots__ = ("_at", "_lists")

    def __init__(self, lists: Mapping[str, Membership], at: float) -> None:
        self._lists = lists
        self._at = at

    def __call__(self, name: str) -> _ListView:
        return _ListView(self._lists.get(name), self._at)


# Compiled code refers to helpers under names an analyst cannot write (dunder names are
# refused), so a fact that happens to be called ``max`` cannot shadow the function.
_HIDDEN_PREFIX: Final = "__rule_"
_MULTIPLY: Final = f"{_HIDDEN_PREFIX}multiply"
_MODULO: Final = f"{_HIDDEN_PREFIX}modulo"
_LIST: Final = f"{_HIDDEN_PREFIX}{LIST_FUNCTION}"

EVAL_GLOBALS: Final[dict[str, Any]] = {
    "__builtins__": {},
    **{f"{_HIDDEN_PREFIX}{name}": function for name, function in ALLOWED_FUNCTIONS.items()},
    _MULTIPLY: _multiply,
    _MODULO: _modulo,
    _LIST: _ListLookup({}, 0.0),
}
"""The globals every compiled rule runs with: no builtins, only the allowed functions, and
no named lists (every list is empty)."""


def list_globals(lists: Mapping[str, Membership], at: float) -> dict[str, Any]:
    """:data:`EVAL_GLOBALS` with ``list("name")`` answering from ``lists`` as of ``at``."""
    return {**EVAL_GLOBALS, _LIST: _ListLookup(lists, at)}


def uses_lists(code: CodeType) -> bool:
    """Whether compiled rule code calls ``list``, so needs :func:`list_globals` to see lists."""
    return _LIST in code.co_names


_BIN_OPS: Final = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
}
_UNARY_OPS: Final = (ast.Not, ast.USub)
_COMPARE_OPS: Final = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_CONSTANT_TYPES: Final = (int, float, str, bool, type(None))

_REFUSED: Final[dict[type[ast.AST], str]] = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Slice: "slices are not allowed",
}
"""Friendlier messages for common refusals; anything not allowed is refused regardless."""


class _Position:
    """Turns an AST node's byte offset into a character column the analyst can count."""

    def __init__(self, rule_id: str, expression: str, source: str | None) -> None:
        self.rule_id = rule_id
        self.lines = expression.splitlines() or [""]
        self.suffix = f" (in {source})" if source else ""

    def error(self, node: ast.AST | None, message: str) -> RuleError:
        line = getattr(node, "lineno", 1)
        byte_column = getattr(node, "col_offset", 0)
        return self.error_at(line, self._chars(line, byte_column), message)

    def error_at(self, line: int, column: int, message: str) -> RuleError:
        return RuleError(self.rule_id, f"{message}{self.suffix}", line, column)

    def _chars(self, line: int, byte_column: int) -> int:
        if not 1 <= line <= len(self.lines):
            return byte_column
        prefix = self.lines[line - 1].encode("utf-8")[:byte_column]
        return len(prefix.decode("utf-8", errors="ignore"))


def compile_code(rule_id: str, expression: str, source: str | None = None) -> CodeType:
    """Validate ``expression`` and compile it; run it with ``eval(code, EVAL_GLOBALS, facts)``.

    ``source`` (a file name) is only added to error messages.
    """
    where = _Position(rule_id, expression if isinstance(expression, str) else "", source)
    # A warning (``"\d"``, an invalid escape) is a typo to refuse, not noise in the logs.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = _parse(expression, where)
        _Validator(where).check(tree.body, depth=0)
        return _compile(ast.fix_missing_locations(_Rewriter().visit(tree)), where)


def _compile(tree: ast.Expression, where: _Position) -> CodeType:
    try:
        return compile(tree, f"<rule {where.rule_id}>", "eval", dont_inherit=True)
    except (SyntaxError, Warning) as exc:
        raise where.error_at(1, 0, f"cannot compile: {exc}") from None


def compile_expression(rule_id: str, expression: str) -> Callable[[Mapping[str, Any]], Any]:
    """Compile an analyst's expression into ``facts -> value``; raises :class:`RuleError`."""
    code = compile_code(rule_id, expression)

    def run(facts: Mapping[str, Any]) -> Any:
        return eval(code, EVAL_GLOBALS, facts)

    run.__name__ = run.__qualname__ = f"rule_{rule_id}"
    return run


def _parse(expression: str, where: _Position) -> ast.Expression:
    if not isinstance(expression, str):
        raise where.error_at(1, 0, "the expression must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise where.error_at(1, 0, f"the expression is longer than {MAX_EXPRESSION_LENGTH} chars")
    try:
        return ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        line, offset = exc.lineno or 1, exc.offset or 1
        raise where.error_at(line, max(offset - 1, 0), f"syntax error: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise where.error_at(1, 0, f"cannot parse: {exc}") from None


class _Validator:
    """Walks the tree and refuses every node type that is not explicitly allowed."""

    def __init__(self, where: _Position) -> None:
        self.where = where
        self.membership_operands: set[int] = set()  # ids of nodes right of ``in``

    def check(self, node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.where.error(node, f"the expression is nested deeper than {MAX_DEPTH}")
        handler = self._HANDLERS.get(type(node))
        if handler is None:
            message = _REFUSED.get(type(node), f"{type(node).__name__} is not allowed")
            raise self.where.error(node, message)
        handler(self, node)
        for child in _children(node):
            self.check(child, depth + 1)

    def _bool_op(self, node: ast.AST) -> None:
        """``and`` / ``or``: the operator nodes have no children to refuse."""

    def _unary_op(self, node: ast.AST) -> None:
        assert isinstance(node, ast.UnaryOp)
        if not isinstance(node.op, _UNARY_OPS):
            raise self.where.error(node, f"unary {type(node.op).__name__} is not allowed")

    def _bin_op(self, node: ast.AST) -> None:
        assert isinstance(node, ast.BinOp)
        if isinstance(node.op, ast.Pow):
            raise self.where.error(node, "the ** operator is not allowed")
        if type(node.op) not in _BIN_OPS:
            raise self.where.error(node, f"operator {type(node.op).__name__} is not allowed")
        if _is_text_repetition(node):
            raise self.where.error(node, "repeating or formatting strings is not allowed")

    def _compare(self, node: ast.AST) -> None:
        assert isinstance(node, ast.Compare)
        for op, right in zip(node.ops, node.comparators, strict=True):
            if not isinstance(op, _COMPARE_OPS):
                raise self.where.error(node, f"comparison {type(op).__name__} is not allowed")
            if isinstance(op, (ast.In, ast.NotIn)):
                self.membership_operands.add(id(right))

    def _constant(self, node: ast.AST) -> None:
        assert isinstance(node, ast.Constant)
        if not isinstance(node.value, _CONSTANT_TYPES):
            kind = type(node.value).__name__
            raise self.where.error(node, f"{kind} constants are not allowed")

    def _name(self, node: ast.AST) -> None:
        assert isinstance(node, ast.Name)
        if "__" in node.id:
            raise self.where.error(node, f"dunder names are not allowed: {node.id!r}")
        if node.id in ALLOWED_FUNCTIONS or node.id == LIST_FUNCTION:
            raise self.where.error(node, f"{node.id!r} can only be called")
        if node.id not in KNOWN_NAMES:
            raise self.where.error(node, f"unknown feature {node.id!r}{_suggest(node.id)}")

    def _call(self, node: ast.AST) -> None:
        assert isinstance(node, ast.Call)
        if node.keywords:
            raise self.where.error(node.keywords[0], "keyword arguments are not allowed")
        func = node.func
        if isinstance(func, ast.Name) and func.id == LIST_FUNCTION:
            self._list_call(node)
        elif not isinstance(func, ast.Name) or func.id not in ALLOWED_FUNCTIONS:
            allowed = ", ".join((*ALLOWED_FUNCTIONS, LIST_FUNCTION))
            raise self.where.error(node, f"only these functions can be called: {allowed}")

    def _list_call(self, node: ast.Call) -> None:
        """``list("name")``: exactly one string literal, and only where ``in`` tests it."""
        if len(node.args) != 1 or not _is_text(node.args[0]):
            message = 'list() takes exactly one list name in quotes: list("name")'
            raise self.where.error(node, message)
        if id(node) not in self.membership_operands:
            raise self.where.error(node, 'list("...") can only be used after in or not in')

    def _children_only(self, node: ast.AST) -> None:
        """Nothing to check beyond the node's sub-expressions (if/else, tuple, list, set)."""

    _HANDLERS: Final[dict[type[ast.AST], Callable[[_Validator, ast.AST], None]]] = {
        ast.BoolOp: _bool_op,
        ast.UnaryOp: _unary_op,
        ast.BinOp: _bin_op,
        ast.Compare: _compare,
        ast.IfExp: _children_only,
        ast.Constant: _constant,
        ast.Name: _name,
        ast.Call: _call,
        ast.Tuple: _children_only,
        ast.List: _children_only,
        ast.Set: _children_only,
    }


def _children(node: ast.AST) -> list[ast.AST]:
    """The sub-expressions to check; a call's function name is vetted by the call itself."""
    if isinstance(node, ast.Call):
        return list(node.args)
    return [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]


def _is_text_repetition(node: ast.BinOp) -> bool:
    """Literal cases refused at load time; the runtime helpers catch the rest."""
    literal = (ast.Tuple, ast.List, ast.Set)
    if isinstance(node.op, ast.Mult):
        return any(_is_text(side) or isinstance(side, literal) for side in (node.left, node.right))
    return isinstance(node.op, ast.Mod) and _is_text(node.left)


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(KNOWN_NAMES), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Rewriter(ast.NodeTransformer):
    """Points calls at the hidden helpers and routes ``*`` and ``%`` through their guards."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        assert isinstance(node.func, ast.Name)
        hidden = ast.Name(id=f"{_HIDDEN_PREFIX}{node.func.id}", ctx=ast.Load())
        node.func = ast.copy_location(hidden, node.func)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        helper = {ast.Mult: _MULTIPLY, ast.Mod: _MODULO}.get(type(node.op))
        if helper is None or not _needs_guard(node):
            return node
        func = ast.copy_location(ast.Name(id=helper, ctx=ast.Load()), node)
        return ast.copy_location(
            ast.Call(func=func, args=[node.left, node.right], keywords=[]), node
        )


def _needs_guard(node: ast.BinOp) -> bool:
    """Skip the guard's call where text cannot be involved: ``0.5 * limit``, ``100 % n``.

    A float never repeats a string, and a number on the left of ``%`` never formats one.
    """
    if isinstance(node.op, ast.Mod):
        return not _is_number(node.left)
    return not any(_is_number(side, floats_only=True) for side in (node.left, node.right))


def _is_number(node: ast.AST, floats_only: bool = False) -> bool:
    if not isinstance(node, ast.Constant):
        return False
    return isinstance(node.value, float) or (not floats_only and isinstance(node.value, int))

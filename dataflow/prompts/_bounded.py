"""A Jinja2 sandbox whose renders are bounded in steps, time and size.

Jinja2's ``ImmutableSandboxedEnvironment`` keeps a template away from Python internals, but not
from the CPU or memory: ``{{ 7**(10**8) }}`` hangs while the template compiles (constant
folding), nested ``range(100000)`` loops run for hours, ``{{ 'a' * 2**31 }}`` builds a 2 GB
string. ``BoundedSandboxedEnvironment`` adds three limits per render, each a ``TemplateLimitError``:

- **steps**: every loop iteration and every macro, call block or block body run counts one
  (``MAX_STEPS``), and the wall time is checked as they run (``MAX_SECONDS``);
- **size**: every value a template builds (operators ``+ * ** %`` and ``~``, list and dict
  literals, calls, filters) is measured before a step that could multiply it and after it:
  characters of strings, items of containers, digits of integers (``MAX_CHARS``,
  ``MAX_INT_BITS``); a container repeated by reference counts each time it appears;
- **output**: the characters a render emits, literal text inside loops included (``MAX_CHARS``).

The steps are counted by code this module adds to the template's syntax tree before Jinja2
generates Python from it (``_generate``, Jinja2's hook for that); the sizes by the sandbox's own
interception points (``intercepted_binops``/``call_binop``, ``call``, ``finalize``) and by
wrapping the filters. Limits are module attributes, read at each check.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import re
import string
import threading
import time
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateRuntimeError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.filters import make_attrgetter
from jinja2.utils import pass_context, pass_environment
from jinja2.visitor import NodeTransformer

__all__ = ["BoundedSandboxedEnvironment", "TemplateLimitError", "render_budget",
           "MAX_STEPS", "MAX_SECONDS", "MAX_CHARS", "MAX_INT_BITS"]

MAX_STEPS = 1_000_000  # loop iterations and macro/block runs per render
MAX_SECONDS = 10.0  # wall time per render
MAX_CHARS = 4_000_000  # size of any value a template builds, and of all it emits in one render
MAX_INT_BITS = 100_000  # bits of an integer a template computes (about 30,000 digits)


class TemplateLimitError(TemplateRuntimeError):
    """A render went past one of this module's limits."""


# -- the budget of one render ----------------------------------------------------------------------
class _Budget:
    __slots__ = ("steps", "chars", "deadline")

    def __init__(self) -> None:
        self.steps = 0
        self.chars = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the render took more than {MAX_SECONDS:g}s")

    def step(self, chars: int = 0) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(f"more than {MAX_STEPS} loop iterations and macro calls")
        self.emit(chars)
        self.check_time()

    def emit(self, chars: int) -> None:
        self.chars += chars
        if self.chars > MAX_CHARS:
            raise TemplateLimitError(f"the output is longer than {MAX_CHARS} characters")


_local = threading.local()


class render_budget:
    """``with render_budget():`` — the limits count from here, for the renders in this thread."""

    def __enter__(self) -> _Budget:
        self._outer = getattr(_local, "budget", None)
        _local.budget = _Budget()
        return _local.budget

    def __exit__(self, *exc: Any) -> None:
        _local.budget = self._outer


def _budget() -> _Budget:
    budget = getattr(_local, "budget", None)
    return budget if budget is not None else _Budget()  # e.g. constant folding at compile time


# -- sizes ------------------------------------------------------------------------------------------
def weight(value: Any, limit: int | None = None) -> int:
    """The size of ``value`` as a template could print it: characters of strings, items (plus
    their own sizes) of containers, digits of integers; a container that appears several times
    counts each time. Stops counting once past ``limit`` (default ``MAX_CHARS``)."""
    limit = MAX_CHARS if limit is None else limit
    total = 0
    stack = [value]
    visits = 0
    while stack:
        item = stack.pop()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, dict):
            total += 1 + 2 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 1 + len(item)
            if total <= limit:
                stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        else:
            total += 1
        if total > limit:
            return total
        visits += 1
        if not visits & 0xFFFF:
            _budget().check_time()
    return total


def _fits(size: int, what: str) -> None:
    if size > MAX_CHARS:
        raise TemplateLimitError(f"{what} would hold more than {MAX_CHARS} characters or items")


def _checked(value: Any, what: str) -> Any:
    _fits(weight(value), what)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_bits(value: int) -> int:
    return abs(value).bit_length()


def _bits_fit(bits: float, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimitError(f"{what} would have more than {MAX_INT_BITS} bits")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _printf_size(fmt: str, args: Any) -> int:
    """An upper bound of the length of ``fmt % args``."""
    specs = _PRINTF.findall(fmt)
    widest = 0
    for width, precision, _ in specs:
        if width == "*" or precision == "*":
            raise TemplateLimitError("a '*' width in a % format")
        widest = max(widest, int(width or 0), int(precision or 0))
    return len(fmt) + len(specs) * (weight(args) + widest)


def _format_size(fmt: str, args: Any, kwargs: Any) -> int:
    """An upper bound of the length of ``fmt.format(*args, **kwargs)``."""
    fields = 0
    widest = 0
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return len(fmt)  # format() itself will refuse it
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise TemplateLimitError("a nested {...} in a format spec")
        widest = max([widest, *(int(n) for n in re.findall(r"\d+", spec or ""))])
    return len(fmt) + fields * (weight(args) + weight(kwargs) + widest)


def _string_method_size(method: Any, args: tuple, kwargs: dict) -> int | None:
    """An upper bound of what a str/bytes method can build, for those that can grow a string
    past its arguments' sizes; None for the others."""
    text = method.__self__
    name = method.__name__
    if name in ("center", "ljust", "rjust", "zfill") and args and _is_int(args[0]):
        return max(len(text), args[0])
    if name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        return len(text) + text.count("\t" if isinstance(text, str) else b"\t") * max(int(tab), 0)
    if name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        hits = len(text) + 1 if not old else text.count(old)
        return len(text) + hits * max(len(new) - len(old), 0)
    if name == "join" and args and hasattr(args[0], "__len__"):
        return weight(args[0]) + len(text) * len(args[0])
    if name == "translate" and args and isinstance(args[0], dict):
        longest = max((weight(v) for v in args[0].values()), default=1)
        return len(text) * max(longest, 1)
    return None


# -- filters and globals with arguments that set a size ----------------------------------------------
def _filter_estimates(name: str, bound: dict) -> int | None:
    if name == "center":
        return max(weight(bound.get("value")), bound.get("width", 80) if _is_int(bound.get("width", 80)) else 0)
    if name == "indent":
        text, width = str(bound.get("s", "")), bound.get("width", 4)
        pad = width if _is_int(width) else len(str(width))
        return len(text) + (text.count("\n") + 1) * max(pad, 0)
    if name == "format":
        return _printf_size(str(bound.get("value", "")), (bound.get("args"), bound.get("kwargs")))
    if name == "replace":
        text, old, new = str(bound.get("s", "")), str(bound.get("old", "")), str(bound.get("new", ""))
        hits = len(text) + 1 if not old else text.count(old)
        return len(text) + hits * max(len(new) - len(old), 0)
    if name == "join":
        items = bound.get("value")
        n = len(items) if hasattr(items, "__len__") else 0
        return weight(items) + len(str(bound.get("d", ""))) * n
    if name in ("batch", "slice"):
        count = bound.get("linecount", bound.get("slices", 1))
        fill = bound.get("fill_with")
        if not _is_int(count):
            return None
        return count * (1 + (weight(fill) if fill is not None else 0))
    if name == "wordwrap":
        text = str(bound.get("s", ""))
        width = bound.get("width", 79)
        wrap = bound.get("wrapstring") or "\n"
        lines = len(text) // max(width, 1) + text.count("\n") + 1 if _is_int(width) else len(text)
        return len(text) + lines * len(str(wrap))
    if name == "urlize":  # each link repeats its text and carries rel= and target=
        text = str(bound.get("value", ""))
        extra = len(str(bound.get("rel") or "")) + len(str(bound.get("target") or "")) + 64
        return 3 * len(text) + (len(text.split()) + 1) * extra
    if name == "truncate":
        return weight(bound.get("s")) + weight(bound.get("end", "..."))
    return None


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja2's ``sum`` filter, whose list/tuple concatenation is linear and bounded."""
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    items = list(iterable)
    if isinstance(start, (list, tuple)) and all(isinstance(i, (list, tuple)) for i in items):
        _fits(sum(weight(i) for i in [start, *items]), "the sum")
        return type(start)(itertools.chain(start, *items))
    return sum(items, start)


def _listed(value: Any) -> Any:
    """``value``, or the list of its items when it is an iterator (whose size is unknown)."""
    return list(value) if hasattr(value, "__next__") and not hasattr(value, "__len__") else value


def _wrap_filter(name: str, func: Any) -> Any:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # pragma: no cover - every built-in filter has one
        signature = None

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if name == "join":  # its size depends on the items: a generator (map, select) is listed first
            args = tuple(_listed(a) for a in args)
            kwargs = {k: _listed(v) for k, v in kwargs.items()}
        for value in itertools.chain(args, kwargs.values()):
            _checked(value, f"the input of the {name!r} filter")
        if signature is not None:
            try:
                bound = signature.bind(*args, **kwargs).arguments
            except TypeError:
                bound = None  # the call itself reports the bad arguments
            if bound is not None:
                estimate = _filter_estimates(name, bound)
                if estimate is not None:
                    _fits(estimate, f"the result of the {name!r} filter")
        return _checked(func(*args, **kwargs), f"the result of the {name!r} filter")

    return bounded


def _bounded_lipsum(func: Any) -> Any:
    @functools.wraps(func)
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:  # noqa: A002
        if _is_int(n) and _is_int(max):
            _fits(n * max * 12, "lipsum()")
        return func(n, html, min, max)

    return lipsum


@pass_context
def _tick(context: Any, chars: int) -> str:
    """Run by the code added at the top of every loop, macro and block body."""
    _budget().step(chars)
    return ""


def _concat(parts: list) -> str:
    """The ``~`` operator, measured."""
    _fits(sum(weight(p) for p in parts), "a ~ concatenation")
    return "".join(str(p) for p in parts)


def _container(value: Any) -> Any:
    """A list, tuple or dict literal, measured once built."""
    return _checked(value, "a list or dict literal")


# -- the syntax tree: steps, concatenation, literals --------------------------------------------------
_BODIES = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.Block)


def _literal_chars(node_list: list) -> int:
    """Characters of literal text a body emits each time it runs, not counting bodies of
    nested loops, macros and blocks (those count their own)."""
    total = 0
    stack = list(node_list)
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.TemplateData):
            total += len(node.data)
        elif isinstance(node, nodes.For):
            stack.extend(node.else_)
        elif not isinstance(node, _BODIES):
            stack.extend(node.iter_child_nodes())
    return total


class _Instrument(NodeTransformer):
    """Adds a step to every loop, macro, call block and block body; routes ``~`` and list,
    tuple and dict literals through measured filters."""

    def __init__(self, environment: Any):
        self.environment = environment

    def _filter(self, node: nodes.Expr, name: str, lineno: int, *args: nodes.Expr) -> nodes.Filter:
        new = nodes.Filter(node, name, list(args), [], None, None, lineno=lineno)
        return new.set_environment(self.environment)

    def _tick(self, body: list, lineno: int) -> None:
        call = self._filter(nodes.Const(_literal_chars(body), lineno=lineno), "_df_tick", lineno)
        body.insert(0, nodes.ExprStmt(call, lineno=lineno).set_environment(self.environment))

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> nodes.Node:
        node = super().generic_visit(node, *args, **kwargs)
        if isinstance(node, _BODIES):
            self._tick(node.body, node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return self._filter(nodes.List(node.nodes, lineno=node.lineno), "_df_concat", node.lineno)

    def _literal(self, node: nodes.Node) -> nodes.Node:
        node = self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":  # an assignment target, e.g. {% set a, b = ... %}
            return node
        return self._filter(node, "_df_container", node.lineno)

    visit_List = visit_Tuple = visit_Dict = _literal


# -- the environment ----------------------------------------------------------------------------------
class BoundedSandboxedEnvironment(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` with this module's limits. Render inside
    ``with render_budget():`` so the limits count per render."""

    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, **options: Any):
        super().__init__(finalize=self._finalize, **options)
        self.filters = {name: _wrap_filter(name, _sum if name == "sum" else func)
                        for name, func in self.filters.items()}
        self.filters["_df_tick"] = _tick
        self.filters["_df_concat"] = _concat
        self.filters["_df_container"] = _container
        self.globals["lipsum"] = _bounded_lipsum(self.globals["lipsum"])

    def add_filter(self, name: str, func: Any) -> None:
        """Register a filter, measured like the built-in ones."""
        self.filters[name] = _wrap_filter(name, func)

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        _Instrument(self).visit(source)
        return super()._generate(source, name, filename, defer_init=defer_init)

    @staticmethod
    def _finalize(value: Any) -> Any:
        size = len(value) if isinstance(value, str) else weight(value)
        _fits(size, "a printed value")
        _budget().emit(size)
        return value

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            _bits_fit(right * math.log2(abs(left)), "the power")
        elif operator == "*":
            if _is_int(left) and _is_int(right):
                _bits_fit(_int_bits(left) + _int_bits(right), "the product")
            elif _is_int(right) and not isinstance(left, (int, float)):
                _fits(max(right, 0) * weight(left), "the repeated value")
            elif _is_int(left) and not isinstance(right, (int, float)):
                _fits(max(left, 0) * weight(right), "the repeated value")
        elif operator == "+" and not isinstance(left, (int, float)):
            _fits(weight(left) + weight(right), "the sum")
        elif operator == "%" and isinstance(left, str):
            _fits(_printf_size(left, right), "the % formatted string")
        return _checked(super().call_binop(context, operator, left, right), f"the result of {operator!r}")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox's wrapper of str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, (str, bytes)):
            name = getattr(target, "__name__", "")
            if name == "join" and args:
                args = (_listed(args[0]), *args[1:])
            if name in ("format", "format_map") and isinstance(owner, str):
                mapping = args[0] if name == "format_map" and args else kwargs
                estimate = _format_size(owner, args if name == "format" else (), mapping)
            else:
                estimate = _string_method_size(target, args, kwargs)
            if estimate is not None:
                _fits(estimate, f"the result of {name}()")
        for value in itertools.chain(args, kwargs.values()):
            _checked(value, "an argument")
        return _checked(super().call(__context, __obj, *args, **kwargs), "the result of a call")

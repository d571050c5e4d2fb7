"""A Jinja2 sandbox that bounds what one render may cost: operations, time and the size of what it makes.

Templates come from API callers. Jinja2's :class:`ImmutableSandboxedEnvironment` keeps them away from
Python's internals and from mutating lists and dicts, but not from spending a shared service's CPU
and memory: ``{{ 7**5000000 }}`` takes seconds (Jinja even folds it at compile time), ``{{ 'A' *
1100000 }}`` makes a megabyte, nested loops grow with the square of their ranges. This environment
bounds each render (:class:`RenderLimits`):

* **operations**: every loop iteration, call, filter, concatenation and output chunk counts one; past
  ``max_operations``, or ``max_seconds`` of wall time, the render stops;
* **sizes**: whatever can grow a value (``*``, ``**``, ``+`` and ``%`` on strings, lists and integers;
  the string methods and filters that pad, repeat, replace, join, indent, expand or format) has the
  size of its result estimated before it runs and refused past ``max_output_chars`` (``max_int_bits``
  for integers, ``max_width`` for a padding or format width); every result is checked again after,
  ``~`` included, and the output of one template is at most ``max_output_chars``;
* intercepted operators are not constant-folded, so the compiler does no work a render would refuse;
  ``lipsum`` (which writes as many paragraphs as asked) is not offered.

A template over a limit raises :class:`TemplateTooCostly` (a :class:`jinja2.TemplateError`).
"""

from __future__ import annotations

import functools
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The filter every ``{% for %}`` loop's iterable goes through, so each iteration is counted.
_LOOP_FILTER = "_counted_loop"
# A %-style conversion: its width and precision, each digits or "*" (taken from the arguments).
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
# A str.format specification's width and precision.
_FORMAT_SPEC = re.compile(r"^(?:.?[<>=^])?[-+ ]?z?#?0?(\d+)?[,_]?(?:\.(\d+))?[a-zA-Z%]?$")
# What an argument of unknown length is counted as in an estimate (a number, a short value).
_SHORT = 32


class TemplateTooCostly(SecurityError):
    """A render went over one of its :class:`RenderLimits`."""


@dataclass(frozen=True)
class RenderLimits:
    """What one template render may cost."""

    max_operations: int = 100_000  # loop iterations, calls, filters and output chunks (about 20 ms here)
    max_seconds: float = 0.25  # wall time, a backstop to the operation count
    max_output_chars: int = 256 * 1024  # of the rendered text, and of any string or list made on the way
    max_width: int = 10_000  # a padding or format width, a precision
    max_int_bits: int = 4096  # an integer an operator makes (about 1,200 digits)


@dataclass
class _Budget:
    operations: int
    deadline: float


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_render_budget", default=None)


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles ``~`` (string concatenation, which the sandbox cannot intercept) through a size check."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded(")
        super().visit_Concat(node, frame)
        self.write(")")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with every render's cost bounded (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, limits: RenderLimits, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        self.globals.pop("lipsum", None)
        growth = _filter_growth(self)
        self.filters = {
            name: self._bounded_filter(function, growth.get(name)) for name, function in self.filters.items()
        }
        self.filters[_LOOP_FILTER] = self._counted

    @contextmanager
    def budget(self) -> Iterator[None]:
        """Count what runs inside against a fresh budget of :attr:`limits`."""
        token = _BUDGET.set(_Budget(self.limits.max_operations, time.monotonic() + self.limits.max_seconds))
        try:
            yield
        finally:
            _BUDGET.reset(token)

    def render_bounded(self, template: Any, variables: Any) -> str:
        """``template`` rendered with ``variables`` (call inside :meth:`budget`), at most ``max_output_chars``."""
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(variables):
            self.tick()
            size += len(chunk)
            if size > self.limits.max_output_chars:
                raise TemplateTooCostly(f"the output is over {self.limits.max_output_chars} characters")
            chunks.append(chunk)
        return "".join(chunks)

    def tick(self) -> None:
        """Count one operation against the current budget (outside :meth:`budget`, nothing is counted)."""
        budget = _BUDGET.get()
        if budget is None:
            return
        budget.operations -= 1
        if budget.operations < 0:
            raise TemplateTooCostly(f"the template takes more than {self.limits.max_operations} operations")
        if budget.operations % 256 == 0 and time.monotonic() > budget.deadline:
            raise TemplateTooCostly(f"the template takes more than {self.limits.max_seconds:g} s")

    def bounded(self, value: Any) -> Any:
        """``value`` (a concatenation's result), counted and checked against the size limits."""
        self.tick()
        return self._checked(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        if operator == "%" and isinstance(left, str):
            self._refuse_larger(_percent_size(self, left, right))
        elif operator == "**" and _is_int(left) and _is_int(right) and right > 0:
            self._check_bits(max(left.bit_length(), 1) * right)
        elif operator == "*":
            self._check_product(left, right)
        return self._checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # The double underscores mirror the parent's: callers' keyword arguments cannot collide with them.
        __self.tick()
        method = getattr(__obj, "__wrapped__", __obj)  # str.format is handed out wrapped by the sandbox
        owner = getattr(method, "__self__", None)
        if isinstance(method, types.BuiltinMethodType) and isinstance(owner, str):
            estimate = _STR_METHOD_GROWTH.get(method.__name__)
            if estimate is not None:
                __self._refuse_larger(estimate(__self, owner, args, kwargs))
        return __self._checked(super().call(__context, __obj, *args, **kwargs))

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        # Every loop's iterable goes through the counting filter (Jinja has no per-iteration hook).
        for loop in list(source.find_all(nodes.For)):
            loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
        return super()._generate(source, name, filename, defer_init)

    def _counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.tick()
            yield item

    def _bounded_filter(self, function: Callable[..., Any], growth: _Estimate | None) -> Callable[..., Any]:
        @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment marks
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self.tick()
            if growth is not None:
                self._refuse_larger(growth(self, args, kwargs))
            return self._checked(function(*args, **kwargs))

        return bounded

    def _checked(self, value: Any) -> Any:
        if isinstance(value, str | list | tuple) and len(value) > self.limits.max_output_chars:
            raise TemplateTooCostly(f"a value of over {self.limits.max_output_chars} items or characters")
        if _is_int(value):
            self._check_bits(value.bit_length())
        return value

    def _refuse_larger(self, size: int) -> None:
        if size > self.limits.max_output_chars:
            raise TemplateTooCostly(f"a value of over {self.limits.max_output_chars} items or characters")

    def _check_bits(self, bits: int) -> None:
        if bits > self.limits.max_int_bits:
            raise TemplateTooCostly(f"an integer of over {self.limits.max_int_bits} bits")

    def _check_product(self, left: Any, right: Any) -> None:
        if _is_int(left) and _is_int(right):
            self._check_bits(left.bit_length() + right.bit_length())
            return
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and _is_int(times):
                self._refuse_larger(len(sequence) * times)

    def width(self, value: Any) -> int:
        """``value`` as a padding width (an int, or a string used as padding: its length), checked."""
        size = len(value) if isinstance(value, str) else value if _is_int(value) else 0
        if size > self.limits.max_width:
            raise TemplateTooCostly(f"a width of {size}, over {self.limits.max_width}")
        return int(size)

    def spec_width(self, numbers: Iterable[str | None]) -> int:
        """A format specification's width and precision (refused over :attr:`RenderLimits.max_width`), summed."""
        total = 0
        for number in numbers:
            if number == "*":
                raise TemplateTooCostly("a format specification may not take its width from an argument")
            if number is not None:
                if len(number) > 9 or int(number) > self.limits.max_width:
                    raise TemplateTooCostly(f"a format width of {number}, over {self.limits.max_width}")
                total += int(number)
        return total


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict) else _SHORT


def _argument(args: Sequence[Any], kwargs: Mapping[str, Any], position: int, name: str, default: Any) -> Any:
    if len(args) > position:
        return args[position]
    return kwargs.get(name, default)


def _percent_size(sandbox: BoundedSandbox, text: str, values: Any) -> int:
    """An upper bound of ``text % values``: its conversions' widths are checked, each may take the longest value."""
    conversions = widths = 0
    for match in _PERCENT_SPEC.finditer(text):
        widths += sandbox.spec_width(match.groups())
        conversions += 1
    items = values.values() if isinstance(values, Mapping) else values if isinstance(values, tuple) else (values,)
    longest = max((_length(item) for item in items), default=0)
    return len(text) + conversions * longest + widths


def _format_size(sandbox: BoundedSandbox, text: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    """An upper bound of ``text.format(...)``: its fields' widths are checked, each may take the longest value."""
    fields = widths = 0
    for _, field, spec, _ in string.Formatter().parse(text):
        if field is None:
            continue
        fields += 1
        if "{" in (spec or ""):
            raise TemplateTooCostly("a format specification may not take its width from an argument")
        match = _FORMAT_SPEC.match(spec or "")
        if match is not None:
            widths += sandbox.spec_width(match.groups())
    values = [*args, *kwargs.values()]
    if len(values) == 1 and isinstance(values[0], Mapping):  # format_map
        values = list(values[0].values())
    longest = max((_length(value) for value in values), default=0)
    return len(text) + fields * longest + widths


def _replace_size(text: Any, old: Any, new: Any, count: Any) -> int:
    """The exact length of ``text.replace(old, new, count)``."""
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    found = text.count(old)  # for "" that is len(text) + 1, as replace counts it
    if _is_int(count) and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _join_size(separator: Any, items: Any) -> int:
    """A lower bound of ``separator.join(items)``: the separators and the strings among the items."""
    if not isinstance(items, Sized):  # a generator: its result is checked after
        return 0
    count = len(items)
    strings = (
        count
        if isinstance(items, str)
        else sum(len(i) for i in items if isinstance(i, str))
        if isinstance(items, list | tuple)
        else 0
    )
    return len(str(separator)) * max(count - 1, 0) + strings


_StrEstimate = Callable[[BoundedSandbox, str, Sequence[Any], Mapping[str, Any]], int]
_Estimate = Callable[[BoundedSandbox, Sequence[Any], Mapping[str, Any]], int]


def _padded(sandbox: BoundedSandbox, text: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    return max(len(text), sandbox.width(_argument(args, kwargs, 0, "width", 0)))


# How long a str method's result may be, estimated before it runs.
_STR_METHOD_GROWTH: dict[str, _StrEstimate] = {
    "center": _padded,
    "ljust": _padded,
    "rjust": _padded,
    "zfill": _padded,
    "expandtabs": lambda sandbox, text, args, kwargs: (
        len(text) + text.count("\t") * sandbox.width(_argument(args, kwargs, 0, "tabsize", 8))
    ),
    "replace": lambda sandbox, text, args, kwargs: _replace_size(
        text,
        _argument(args, kwargs, 0, "old", ""),
        _argument(args, kwargs, 1, "new", ""),
        _argument(args, kwargs, 2, "count", -1),
    ),
    "join": lambda sandbox, text, args, kwargs: _join_size(text, _argument(args, kwargs, 0, "iterable", ())),
    "translate": lambda sandbox, text, args, kwargs: (
        len(text) * max((_length(v) for v in _argument(args, kwargs, 0, "table", {}).values()), default=1)
        if isinstance(_argument(args, kwargs, 0, "table", {}), Mapping)
        else len(text)
    ),
    "format": _format_size,
    "format_map": _format_size,
}


def _filter_growth(sandbox: BoundedSandbox) -> dict[str, _Estimate]:
    """How long each growing filter's result may be, estimated before it runs. Filters see the value
    first (after the eval context, for those that take one)."""

    def value_at(args: Sequence[Any], position: int) -> Any:
        # pass_eval_context filters (replace, join) get the eval context before the value.
        offset = 1 if args and isinstance(args[0], EvalContext) else 0
        return args[offset + position] if len(args) > offset + position else None

    def widths_after_value(s: BoundedSandbox, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
        for value in (*args[1:], *kwargs.values()):
            if _is_int(value):
                s.width(value)
        return 0

    def indent(s: BoundedSandbox, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
        text = value_at(args, 0)
        lines = text.count("\n") + 1 if isinstance(text, str) else 1
        return _length(text) + lines * s.width(_argument(args, kwargs, 1, "width", 4))

    return {
        "center": widths_after_value,
        "wordwrap": widths_after_value,
        "truncate": widths_after_value,
        "slice": widths_after_value,
        "batch": widths_after_value,
        "indent": indent,
        "replace": lambda s, args, kwargs: _replace_size(
            value_at(args, 0), value_at(args, 1), value_at(args, 2), kwargs.get("count", value_at(args, 3))
        ),
        "join": lambda s, args, kwargs: _join_size(kwargs.get("d", value_at(args, 1) or ""), value_at(args, 0)),
        "format": lambda s, args, kwargs: _percent_size(s, value_at(args, 0) or "", (*args[1:], *kwargs.values())),
    }

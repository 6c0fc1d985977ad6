"""Publication filters on tags (a subscription's ``tf``): checked once at subscribe, then
evaluated per subscriber against each publication's tags. Pure.

A leaf compares the tag ``key`` with ``cmp``: ``eq``/``neq`` (``val``), ``in``/``nin``
(``vals``), ``ex``/``nex`` (the tag exists or not), ``sw``/``ew``/``ct`` (starts with, ends
with, contains ``val``), ``gt``/``gte``/``lt``/``lte`` (numerically, both sides read as
numbers; a tag that is not a number does not match). A missing tag matches only ``neq``,
``nin`` and ``nex``. A node with ``op`` ``and``, ``or`` or ``not`` combines its ``nodes``
(``not`` takes exactly one).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping

from gateway.wire.centrifugo.protocol_pb2 import FilterNode

MAX_NODES = 64
MAX_DEPTH = 8
MAX_VALUES = 64

Filter = Callable[[Mapping[str, str]], bool]
"""A compiled filter: True when a publication with these tags passes."""


class FilterError(ValueError):
    """A filter that is malformed or too large."""


def compile_filter(node: FilterNode) -> Filter:
    """The filter a ``tf`` describes.

    Raises:
        FilterError: an unknown ``op`` or ``cmp``, a missing value, more than `MAX_NODES`
            nodes, deeper than `MAX_DEPTH`, or more than `MAX_VALUES` values in a leaf.
    """
    count = [0]
    return _compile(node, 1, count)


def _compile(node: FilterNode, depth: int, count: list[int]) -> Filter:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise FilterError(f"a tags filter has at most {MAX_NODES} nodes")
    if depth > MAX_DEPTH:
        raise FilterError(f"a tags filter nests at most {MAX_DEPTH} levels")
    if node.op:
        children = [_compile(child, depth + 1, count) for child in node.nodes]
        if node.op == "and" and children:
            return lambda tags: all(child(tags) for child in children)
        if node.op == "or" and children:
            return lambda tags: any(child(tags) for child in children)
        if node.op == "not" and len(children) == 1:
            only = children[0]
            return lambda tags: not only(tags)
        raise FilterError(f"tags filter op {node.op[:16]!r} needs its nodes (and, or, not)")
    return _leaf(node)


def _leaf(node: FilterNode) -> Filter:
    key, cmp, val = node.key, node.cmp, node.val
    vals = frozenset(node.vals)
    if not key:
        raise FilterError("a tags filter leaf needs a key")
    if len(node.vals) > MAX_VALUES:
        raise FilterError(f"a tags filter leaf has at most {MAX_VALUES} values")
    if cmp == "ex":
        return lambda tags: key in tags
    if cmp == "nex":
        return lambda tags: key not in tags
    if cmp == "in":
        return lambda tags: tags.get(key) in vals
    if cmp == "nin":
        return lambda tags: tags.get(key) not in vals
    if cmp == "neq":
        return lambda tags: tags.get(key) != val
    strings: dict[str, Callable[[str, str], bool]] = {
        "eq": operator.eq,
        "sw": str.startswith,
        "ew": str.endswith,
        "ct": operator.contains,
    }
    if cmp in strings:
        compare = strings[cmp]
        return lambda tags: (tag := tags.get(key)) is not None and compare(tag, val)
    numbers: dict[str, Callable[[float, float], bool]] = {
        "gt": operator.gt,
        "gte": operator.ge,
        "lt": operator.lt,
        "lte": operator.le,
    }
    if cmp in numbers:
        bound = _number(val)
        if bound is None:
            raise FilterError(f"tags filter {cmp} needs a numeric val")
        order = numbers[cmp]
        return lambda tags: (number := _number(tags.get(key))) is not None and order(number, bound)
    raise FilterError(f"unknown tags filter cmp {cmp[:16]!r}")


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None

"""Quality-band decoding (Landsat C2 QA_PIXEL bits, Sentinel-2 SCL classes, expressions).

Behind :mod:`mosaic_assembler.selection`; numpy only (no rio-tiler), so that options are
validated without the readers.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy

from mosaic_assembler.errors import ConfigError


def _lookup(names: Iterable[str], table: Mapping[str, int], what: str) -> list[int]:
    """Codes of ``names`` in ``table``; ValueError listing the valid names otherwise."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown {what} name(s) {unknown}; valid: {', '.join(table)}")
    return [table[n] for n in names]


def _int_array(values: Any, what: str) -> numpy.ndarray:
    """``values`` as a plain integer ndarray (TypeError otherwise)."""
    arr = numpy.asarray(numpy.ma.getdata(values))
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer array, got {arr.dtype}")
    return arr


_BINOPS = {
    ast.BitAnd: numpy.bitwise_and,
    ast.BitOr: numpy.bitwise_or,
    ast.LShift: numpy.left_shift,
    ast.RShift: numpy.right_shift,
}
_UNARY = {ast.Invert: numpy.invert, ast.Not: numpy.logical_not}
_CMPS = {
    ast.Lt: numpy.less,
    ast.LtE: numpy.less_equal,
    ast.Gt: numpy.greater,
    ast.GtE: numpy.greater_equal,
    ast.Eq: numpy.equal,
    ast.NotEq: numpy.not_equal,
}


def _eval_restricted(expression: str, env: Mapping[str, numpy.ndarray]) -> Any:
    """Evaluate a whitelisted Python expression over ``env`` with numpy (no ``eval``).

    Raises:
        ValueError: syntax error, unknown name or any construct outside the whitelist.

    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"invalid expression {expression!r}: {exc.msg}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise ValueError(f"unknown name {node.id!r}; available: {', '.join(env)}")
            return env[node.id]
        if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            return node.value
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
                return -ev(node.operand)
            if type(node.op) in _UNARY:
                return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.BoolOp):
            func = numpy.logical_and if isinstance(node.op, ast.And) else numpy.logical_or
            return functools.reduce(func, [ev(v) for v in node.values])
        if isinstance(node, ast.Compare) and all(type(o) in _CMPS for o in node.ops):
            left, out = ev(node.left), True
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                out = numpy.logical_and(out, _CMPS[type(op)](left, right))
                left = right
            return out
        raise ValueError(f"unsupported syntax in {expression!r}: {type(node).__name__}")

    try:
        return ev(tree.body)
    except TypeError as exc:
        raise ValueError(f"cannot evaluate {expression!r}: {exc}") from None


#: Landsat Collection 2 ``QA_PIXEL`` flag bits usable for exclusion (clear, bit 6, is not).
LANDSAT_QA_BITS: dict[str, int] = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "water": 7,
}
LANDSAT_C2_DEFAULT = ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow")
#: Sentinel-2 L2A scene classification (SCL) classes (``topographic_shadow`` = ``dark_area``).
S2_SCL_CLASSES: dict[str, int] = {
    "no_data": 0,
    "saturated": 1,
    "dark_area": 2,
    "topographic_shadow": 2,
    "cloud_shadow": 3,
    "vegetation": 4,
    "not_vegetated": 5,
    "water": 6,
    "unclassified": 7,
    "cloud_medium": 8,
    "cloud_high": 9,
    "cirrus": 10,
    "snow": 11,
}
S2_SCL_DEFAULT = (
    "no_data",
    "saturated",
    "cloud_shadow",
    "cloud_medium",
    "cloud_high",
    "cirrus",
    "snow",
)


def landsat_qa_mask(qa: numpy.ndarray, names: Iterable[str] = LANDSAT_C2_DEFAULT) -> numpy.ndarray:
    """Decode a Landsat C2 ``QA_PIXEL`` band: True where the observation must be excluded.

    Args:
        qa: integer QA_PIXEL values.
        names: flags that exclude an observation (keys of ``LANDSAT_QA_BITS``).

    Raises:
        ValueError: unknown flag name (the message lists the valid ones).
        TypeError: non-integer ``qa``.

    """
    bits = sum({1 << b for b in _lookup(names, LANDSAT_QA_BITS, "Landsat QA_PIXEL flag")})
    return (_int_array(qa, "qa") & bits) != 0


def s2_scl_mask(scl: numpy.ndarray, names: Iterable[str] = S2_SCL_DEFAULT) -> numpy.ndarray:
    """Decode a Sentinel-2 L2A ``SCL`` band: True where the class is one of ``names``.

    Raises:
        ValueError: unknown class name (the message lists the valid ones).
        TypeError: non-integer ``scl``.

    """
    codes = sorted(set(_lookup(names, S2_SCL_CLASSES, "Sentinel-2 SCL class")))
    return numpy.isin(_int_array(scl, "scl"), codes)


def expression_mask(arrays: Mapping[str, numpy.ndarray], expression: str) -> numpy.ndarray:
    """Evaluate a restricted boolean expression (True = exclude) over named arrays.

    Python syntax and precedence (``&`` binds tighter than comparisons, so
    ``qa & 0b11000 > 0`` means ``(qa & 24) > 0``). Allowed: names from ``arrays``,
    int/float literals (``0b``/``0x`` included, unary ``-``), ``& | ~ << >>``, comparisons
    (chained too) and ``and``/``or``/``not`` as element-wise logical operators. Integer
    arrays are widened to int64 first; a non-boolean result means "non-zero". Evaluated
    with numpy on the parsed AST (numexpr lacks ``0b`` literals and integer ``&``).

    Raises:
        ValueError: syntax error, unknown name or any other construct.

    """
    env = {}
    for key, value in arrays.items():
        arr = numpy.asarray(numpy.ma.getdata(value))
        env[key] = arr.astype(numpy.int64) if arr.dtype.kind in "iu" and arr.itemsize < 8 else arr
    result = numpy.asarray(_eval_restricted(expression, env))
    shape = numpy.broadcast_shapes(result.shape, *(a.shape for a in env.values()))
    return numpy.broadcast_to(result if result.dtype == bool else result != 0, shape).copy()


QA_KINDS = ("landsat", "scl", "expression")


@dataclass(frozen=True)
class QAMask:
    """Exclude observations flagged by a quality band before pixel selection.

    Attributes:
        band: STAC asset key of the QA band, or a 1-based band index of each COG.
        kind: "landsat" (Collection 2 QA_PIXEL bits), "scl" (Sentinel-2 L2A scene
            classes) or "expression" (e.g. "(qa & 0b11000) > 0", the band is named `qa`).
        names: bits/classes to exclude (empty: the preset defaults).
        expression: for kind "expression".
    """

    band: str
    kind: str = "landsat"
    names: tuple[str, ...] = ()
    expression: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in QA_KINDS:
            raise ConfigError(f"unknown mask kind {self.kind!r}; valid: {', '.join(QA_KINDS)}")
        if self.kind == "expression" and not self.expression:
            raise ConfigError("a mask expression is needed")
        try:  # validate names and expression once, on a tiny array
            self.exclude(numpy.zeros((1, 1), dtype="uint16"))
        except (ValueError, TypeError, SyntaxError, ArithmeticError) as e:
            raise ConfigError(f"invalid QA mask: {e}") from e

    @property
    def bidx(self) -> int | None:
        """The band index when `band` is one, else None (an asset key)."""
        return int(self.band) if self.band.isdigit() else None

    def exclude(self, qa: numpy.ndarray) -> numpy.ndarray:
        """True where the observation must be excluded."""
        if self.kind == "landsat":
            return landsat_qa_mask(qa, self.names or LANDSAT_C2_DEFAULT)
        if self.kind == "scl":
            return s2_scl_mask(qa, self.names or S2_SCL_DEFAULT)
        assert self.expression is not None
        return numpy.asarray(expression_mask({"qa": qa}, self.expression), bool)

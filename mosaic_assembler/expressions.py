"""mosaic_assembler.expressions: band math over STAC assets (rio-tiler's expressions)."""

from __future__ import annotations

import re
from typing import Any

from mosaic_assembler.selection import method_traits, output_dtype

__all__ = ["expression_assets", "expression_dtype", "translate_expression"]

_NUMEXPR_NAMES = {
    "where", "sqrt", "log", "log10", "log1p", "exp", "expm1", "abs", "sin", "cos", "tan",
    "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh",
    "arctanh", "real", "imag", "complex", "conj", "ceil", "floor", "fmod", "isnan", "isfinite",
    "isinf", "contains", "True", "False",
}  # fmt: skip
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def expression_assets(expression: str) -> tuple[str, ...]:
    """STAC asset keys an expression names, in order of appearance (b1… are band names)."""
    names = [
        n
        for n in _IDENT.findall(expression)
        if n not in _NUMEXPR_NAMES and not re.fullmatch(r"b\d+", n)
    ]
    return tuple(dict.fromkeys(names))


def translate_expression(expression: str, assets: tuple[str, ...]) -> str:
    """Asset names → rio-tiler band names (b1 = first asset …; single-band assets)."""
    index = {a: f"b{i}" for i, a in enumerate(assets, start=1)}
    return _IDENT.sub(lambda m: index.get(m.group(0), m.group(0)), expression)


def expression_dtype(read: Any, source_dtype: str) -> str:
    """Output dtype of an expression run.

    rio-tiler computes expressions in float64. Bands that only pass a source band through
    (e.g. "b3;b2;b1" or the RGB of "b3;b2;b1;(b4-b3)/(b4+b3)" with lastbandhigh, which drops
    the last band) keep the source dtype, losslessly; anything computed is stored as float32.
    """
    blocks = [b.strip() for b in read.expression.split(";") if b.strip()]
    if method_traits(read.pixel_selection).drops_last_band:
        blocks = blocks[:-1]
    passthrough = bool(blocks) and all(re.fullmatch(r"b\d+", b) for b in blocks)
    return output_dtype(read.pixel_selection, source_dtype, passthrough)

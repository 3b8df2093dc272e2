"""8-bit composites of a chip (the seed's b432, b743, tcap) and the C2 → C1 rescaling.

The stretch is the seed's `byte_scale`: `255 / (max - min) * (v - min)`, clipped to 0..255
and truncated to uint8; masked (fill) pixels are 0 in every channel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy

from mosaic_assembler.errors import ConfigError
from mosaic_assembler.expressions import expression_assets

__all__ = [
    "COMPOSITES",
    "RESCALES",
    "Composite",
    "parse_composite",
    "rescale_values",
    "stretch",
]

_TC = "blue", "green", "red", "nir08", "swir16", "swir22"


def _linear(coefficients: Sequence[float]) -> str:
    return " + ".join(f"{c} * {b}" for c, b in zip(coefficients, _TC, strict=True))


@dataclass(frozen=True)
class Composite:
    """Three channels, each an expression over asset keys, and each its stretch range.

    Attributes:
        name: file-name-safe name (`OUT_DIR/<name>/<point>/<date>_<item>.png`).
        bands: one expression per channel (asset keys, numexpr syntax).
        ranges: (min, max) per channel, in the values' units (after `rescale`).
    """

    name: str
    bands: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ConfigError(f"composite name {self.name!r} must be letters, digits, _ or -")
        if len(self.bands) not in (1, 3) or len(self.ranges) != len(self.bands):
            raise ConfigError(
                f"composite {self.name!r} needs 1 or 3 expressions and as many ranges"
            )
        for lo, hi in self.ranges:
            if not hi > lo:
                raise ConfigError(f"composite {self.name!r}: range {lo}-{hi} is empty")

    @property
    def assets(self) -> tuple[str, ...]:
        """The asset keys the expressions read."""
        return tuple(dict.fromkeys(a for b in self.bands for a in expression_assets(b)))

    def render(self, values: Mapping[str, numpy.ndarray], invalid: numpy.ndarray) -> numpy.ndarray:
        """(channels, h, w) uint8: each expression stretched, fill → 0."""
        import numexpr

        out = []
        for expr, (lo, hi) in zip(self.bands, self.ranges, strict=True):
            env = {a: values[a] for a in expression_assets(expr)}
            data = env[expr] if expr in env else numexpr.evaluate(expr, local_dict=env)
            out.append(stretch(numpy.asarray(data, dtype="float64"), lo, hi, invalid))
        return numpy.stack(out)


def stretch(data: numpy.ndarray, lo: float, hi: float, invalid: numpy.ndarray) -> numpy.ndarray:
    """The seed's byte_scale: lo..hi → 0..255 (clipped, truncated); invalid and NaN → 0."""
    with numpy.errstate(invalid="ignore"):
        scaled = numpy.clip((255 / (hi - lo)) * (data - lo), 0, 255)
    scaled = numpy.where(invalid | ~numpy.isfinite(scaled), 0, scaled)
    return scaled.astype("uint8")


#: The seed's composites and stretches (Landsat Collection 1 units: use `rescale="c1"` on
#: Collection 2 data, as the seed does).
COMPOSITES: dict[str, Composite] = {
    c.name: c
    for c in (
        Composite("b432", ("nir08", "red", "green"), ((151, 4951), (-300, 2500), (50, 1150))),
        Composite("b743", ("swir22", "nir08", "red"), ((-904, 3696), (151, 4951), (-300, 2500))),
        Composite(
            "tcap",
            (
                _linear((0.2043, 0.4158, 0.5524, 0.5741, 0.3124, 0.2303)),  # brightness
                _linear((-0.1603, -0.2819, -0.4934, 0.7940, -0.0002, -0.1446)),  # greenness
                _linear((0.0315, 0.2021, 0.3102, 0.1594, -0.6806, -0.6109)),  # wetness
            ),
            ((604, 5592), (49, 3147), (-2245, 843)),
        ),
    )
}

_RANGE = re.compile(r"\s*(-?\d+(?:\.\d*)?(?:e-?\d+)?)\s*-\s*(-?\d+(?:\.\d*)?(?:e-?\d+)?)\s*")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses (`where(a, b, c)` stays whole)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in (*parts, cur)]


def parse_composite(spec: str) -> Composite:
    """A built-in name or `NAME=EXPR,EXPR,EXPR:MIN-MAX[,MIN-MAX,MIN-MAX]`.

    One range applies to every channel. Example: `ndvi=(nir08-red)/(nir08+red):-1-1`.

    Raises:
        ConfigError: an unknown name or a malformed definition.
    """
    spec = spec.strip()
    if "=" not in spec:
        if spec not in COMPOSITES:
            raise ConfigError(
                f"unknown `composites` {spec!r}; built-in: {', '.join(COMPOSITES)}, or "
                "NAME=EXPR,EXPR,EXPR:MIN-MAX,..."
            )
        return COMPOSITES[spec]
    name, _, rest = spec.partition("=")
    exprs, sep, ranges = rest.rpartition(":")
    bands = tuple(_split_top(exprs))
    matches = [_RANGE.fullmatch(r) for r in _split_top(ranges)]
    if not sep or not all(bands) or not all(matches):
        raise ConfigError(f"`composites` {spec!r} is not NAME=EXPR,EXPR,EXPR:MIN-MAX,...")
    parsed = tuple((float(m.group(1)), float(m.group(2))) for m in matches if m)
    if len(parsed) == 1:
        parsed = parsed * len(bands)
    return Composite(name.strip(), bands, parsed)


#: Value rescalings: name → (description for the values CSV, function).
RESCALES = {
    "none": "source values",
    "c1": "Collection 2 -> Collection 1: int16((v * 2.75e-05 - 0.2) * 10000)",
}


def rescale_values(data: numpy.ndarray, rescale: str) -> numpy.ndarray:
    """The seed's `convert_sr` for `rescale="c1"`; the data unchanged for "none"."""
    if rescale == "none":
        return data
    return ((data.astype(float) * 0.0000275 - 0.2) * 10000).astype(numpy.int16)

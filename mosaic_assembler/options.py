"""mosaic_assembler.options: the validated options of a run and what a run returns.

A run's source is one value of a small union (`Source`): a mosaicJSON file, a STAC items
file, a STAC API search, a dynamic tiler (optionally with one of the first three as an
index of which tiles have assets) or titiler-pgstac (with the search it registers). Each
value validates itself once, on construction. `build_options` turns the flat keyword
arguments of `assemble()` (and of the CLI) into an `AssembleOptions`; `AssembleKwargs` is
their typed, documented list.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from mosaic_assembler.errors import ConfigError
from mosaic_assembler.executors import ExecutorOptions
from mosaic_assembler.grid import AOI, check_zoom
from mosaic_assembler.results import AssembleResult, Progress
from mosaic_assembler.selection import QAMask, ReadOptions, method_traits, server_methods
from mosaic_assembler.sources.stac_params import StacSearch
from mosaic_assembler.tilers.http import HttpOptions
from mosaic_assembler.visual import Visual
from mosaic_assembler.writer import COGOptions

__all__ = [
    "AssembleKwargs",
    "AssembleOptions",
    "AssembleResult",
    "ItemsFile",
    "MosaicJSONFile",
    "PgstacTiler",
    "Progress",
    "Source",
    "StacSearch",
    "Tiler",
    "build_options",
]


@dataclass(frozen=True)
class MosaicJSONFile:
    """A mosaicJSON document (cogeo-mosaic's model) on disk."""

    path: str | Path


@dataclass(frozen=True)
class ItemsFile:
    """A STAC ItemCollection / FeatureCollection file; `--assets` picks its bands."""

    path: str | Path


#: What can tell which tiles have assets (and, read in-process, render them).
Index = MosaicJSONFile | ItemsFile | StacSearch


@dataclass(frozen=True)
class Tiler:
    """A dynamic tiler with TiTiler's contract renders the tiles.

    Attributes:
        http: how tiles are requested.
        index: a local source only used to skip tiles without assets (None: every tile of
            the AOI is requested).
    """

    http: HttpOptions
    index: Index | None = None


@dataclass(frozen=True)
class PgstacTiler:
    """titiler-pgstac renders the tiles of a STAC search it registers.

    Attributes:
        url: the titiler-pgstac root URL.
        search: the search (also run against the STAC API to pin its items).
        http: request options for its tiles (headers, params, retries, timeout …), as
            keyword arguments of `tilers.pgstac.pgstac_http_options`.
    """

    url: str
    search: StacSearch
    http: tuple[tuple[str, Any], ...] = field(default=(), repr=False)


Source = MosaicJSONFile | ItemsFile | StacSearch | Tiler | PgstacTiler


@dataclass(frozen=True)
class AssembleOptions:
    """Everything a run needs, validated on construction.

    Attributes:
        zoom: the TileMatrixSet level of the output (None with `crs`: `resolution` decides).
        source: where the imagery comes from (see `Source`).
        bbox: lon/lat W S E N (W > E crosses the antimeridian); or
        aoi: a GeoJSON mapping, string or file path. Neither: the source's bounds.
        assets: STAC asset keys, in band order (items sources).
        tms: the output TileMatrixSet: a morecantile id or an OGC TMS 2.0 JSON file
            (None: WebMercatorQuad).
        crs: a custom grid's CRS (EPSG:XXXX, WKT, PROJ, or "auto-utm"), with `resolution`.
        resolution: a custom grid's pixel size, in `crs` units.
        snap: "native" (the custom grid is the sources' pixel grid; the default when they
            all share `crs` and `resolution`) or "none" (pixel corners at multiples of
            `resolution`).
    """

    zoom: int | None
    source: Source
    bbox: tuple[float, float, float, float] | None = None
    aoi: Mapping[str, Any] | str | Path | None = None
    assets: tuple[str, ...] = ()
    read: ReadOptions = field(default_factory=ReadOptions)
    cog: COGOptions = field(default_factory=COGOptions)
    clip: bool = False
    overwrite: bool = False
    allow_empty: bool = False
    allow_partial: bool = False
    max_pixels: float = 1e10
    concurrency: int | None = None
    chunk_tiles: int | None = None
    run_dir: str | Path | None = None
    keep_run_dir: bool = False
    restart: bool = False
    split_zoom: int | None = None
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    visual: Visual | None = None
    tms: str | Path | None = None
    crs: str | None = None
    resolution: float | None = None
    snap: str | None = None
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._check_grid()
        if self.bbox is not None:
            AOI.from_bbox(*self.bbox)  # validates
            if self.aoi is not None:
                raise ConfigError("give either a bbox or an AOI, not both")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.chunk_tiles is not None and self.chunk_tiles < 1:
            raise ConfigError(f"chunk-tiles must be >= 1, got {self.chunk_tiles}")
        if not self.max_pixels > 0:
            raise ConfigError(f"max-pixels must be positive, got {self.max_pixels}")
        has_area = self.bbox is not None or self.aoi is not None
        if self.stac is not None and not has_area:
            raise ConfigError("`stac` needs `bbox` or `aoi` (the search geometry)")
        if isinstance(self.source, Tiler) and self.source.index is None and not has_area:
            raise ConfigError("`tiler` without a local source needs `bbox` or `aoi`")
        if self.split_zoom is not None:
            check_zoom(self.split_zoom)
            if self.zoom is not None and self.split_zoom > self.zoom:
                raise ConfigError(
                    f"`split_zoom` {self.split_zoom} must not be above `zoom` {self.zoom}"
                )
        self._check_method()

    def _check_grid(self) -> None:
        """The grid options: a TMS, or a CRS with a resolution (see `_tms`)."""
        from mosaic_assembler._tms import load_grid, parse_crs

        if self.crs is None:
            if self.resolution is not None:
                raise ConfigError("`resolution` needs `crs` (the custom grid's CRS)")
            if self.snap is not None:
                raise ConfigError("`snap` applies to a custom grid (`crs` with `resolution`)")
            if self.zoom is None:
                raise ConfigError("`zoom` is required (or `crs` with `resolution`)")
            grid = load_grid(self.tms)  # validates an id or a TMS file
            if grid.is_default:
                check_zoom(self.zoom)
            else:
                grid.check_zoom(self.zoom)
            return
        if self.tms is not None:
            raise ConfigError("give either `tms` or `crs` with `resolution`, not both")
        if self.resolution is None:
            raise ConfigError("`crs` needs `resolution` (the pixel size, in the CRS's units)")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int | float):
            raise ConfigError(f"`resolution` must be a number, got {self.resolution!r}")
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise ConfigError(f"`resolution` must be a positive number, got {self.resolution}")
        if self.zoom is not None:
            raise ConfigError(
                "`zoom` is decided by `resolution` on a custom grid (`crs`): leave it out"
            )
        if self.snap not in (None, "native", "none"):
            raise ConfigError(f"`snap` must be native or none, got {self.snap!r}")
        if self.crs != "auto-utm":
            parse_crs(self.crs)
        if isinstance(self.source, Tiler | PgstacTiler):
            raise ConfigError(
                "a custom grid (`crs`) is known only in-process: a dynamic tiler (`tiler`) "
                "serves named TileMatrixSets (`tms`)"
            )

    def _check_method(self) -> None:
        """Refuse method/source combinations that cannot work, before anything is read."""
        method = self.read.pixel_selection
        if isinstance(self.source, Tiler | PgstacTiler):
            if method not in server_methods():
                raise ConfigError(
                    f"`pixel_selection` {method} is computed in-process only; a "
                    f"dynamic tiler knows {', '.join(server_methods())}"
                )
            if self.read.qa_mask is not None:
                raise ConfigError("`mask_band` works with the in-process tiler, not with `tiler`")
            self._check_time_options()
        if method_traits(method).needs_datetimes and not self.uses_items:
            raise ConfigError(
                f"{method} needs STAC items (`items`): it orders observations by item datetime"
            )
        read = self.read
        if not self.uses_items:
            for given, what in (
                (read.group_by != "item", f"`group_by` {read.group_by}"),
                (read.harmonize is not None, f"`harmonize` {read.harmonize}"),
                ("date" in read.provenance, "`provenance` date"),
            ):
                if given:
                    raise ConfigError(
                        f"{what} needs STAC items (`items` or `stac`): it reads item datetimes "
                        "and properties"
                    )

    def _check_time_options(self) -> None:
        """What a dynamic tiler cannot do: it returns the selected pixels of items only."""
        read = self.read
        if read.group_by != "item":
            raise ConfigError(
                f"`group_by` {read.group_by} works with the in-process tiler, not with `tiler`: "
                "a dynamic tiler selects over items, it cannot fuse the scenes of a date first"
            )
        if read.provenance:
            raise ConfigError(
                "`provenance` works with the in-process tiler, not with `tiler`: a dynamic "
                "tiler returns only the selected pixels"
            )
        if read.harmonize is not None:
            raise ConfigError(
                "`harmonize` works with the in-process tiler, not with `tiler`: the offset "
                "must be removed before the server selects"
            )

    @property
    def index(self) -> Index | None:
        """The local source that lists assets per tile (None: a tiler without one)."""
        if isinstance(self.source, Tiler):
            return self.source.index
        if isinstance(self.source, PgstacTiler):
            return self.source.search
        return self.source

    @property
    def stac(self) -> StacSearch | None:
        """The STAC API search of the run, if any."""
        return self.index if isinstance(self.index, StacSearch) else None

    @property
    def items(self) -> ItemsFile | None:
        """The STAC items file of the run, if any."""
        return self.index if isinstance(self.index, ItemsFile) else None

    @property
    def http(self) -> HttpOptions | None:
        """The dynamic tiler's request options (`--tiler URL`), if any."""
        return self.source.http if isinstance(self.source, Tiler) else None

    @property
    def uses_items(self) -> bool:
        """Whether assets are STAC items (so `assets` and asset-named expressions apply)."""
        return self.items is not None or self.stac is not None


class AssembleKwargs(TypedDict, total=False):
    """The flat keyword arguments of `assemble()`, one per CLI option.

    `--pixel-selection` is `pixel_selection`, and so on. Only `zoom` and a source are required.
    """

    # area and grid
    zoom: int  # TileMatrixSet level (0-24 for WebMercatorQuad)
    tms: str | Path  # morecantile TileMatrixSet id or OGC TMS 2.0 JSON file
    crs: str  # custom grid: EPSG:XXXX, WKT, PROJ or "auto-utm" (with resolution)
    resolution: float  # custom grid: pixel size in crs units
    snap: str  # custom grid: native (the sources' pixel grid) or none
    bbox: Sequence[float]  # W S E N in lon/lat; W > E crosses the antimeridian
    aoi: Mapping[str, Any] | str | Path  # GeoJSON mapping, text or file
    clip: bool  # mask pixels outside the AOI polygon
    tilesize: int  # 256 or 512
    # sources (exactly one of mosaicjson, items, stac; tiler may add to one or stand alone)
    mosaicjson: str | Path
    items: str | Path
    assets: str | Sequence[str]  # STAC asset keys in band order ("red,green,blue")
    stac: str  # STAC API root URL
    collections: str | Sequence[str]
    datetime: str
    query: str | Sequence[str]
    filter: str
    max_items: int
    seasons: str | Sequence[str]
    sort_by: str
    save_mosaicjson: str
    mosaicjson_asset: str
    tiler: str  # URL template with {z}/{x}/{y}, or "titiler-pgstac:URL"
    tiler_params: Mapping[str, str] | Sequence[tuple[str, str]]
    headers: Mapping[str, str] | Sequence[tuple[str, str]]  # never printed
    retries: int
    timeout: float
    backoff: float
    http_seed: int
    # pixels
    pixel_selection: str  # first, median, p10, geomedian, latest-clear …
    bidx: Sequence[int]
    expression: str
    resampling: str
    mask_band: str | int
    mask_bits: str
    mask_expression: str
    group_by: str  # "item" (default) or "solar_day" (scenes of one local solar day fused)
    harmonize: str  # "s2": remove Sentinel-2's +1000 DN offset (baseline >= 04.00)
    provenance: str | Sequence[str]  # "count", "date": OUT.count.tif, OUT.date.tif
    rescale: str | Sequence[str] | Sequence[tuple[float, float]]
    color_ops: str
    # output
    cog_profile: str
    creation_options: Mapping[str, str]
    gdal_config: Mapping[str, str]
    overview_resampling: str
    overwrite: bool
    split_zoom: int
    allow_empty: bool
    allow_partial: bool
    max_pixels: float
    # execution and resume
    concurrency: int
    chunk_tiles: int
    run_dir: str | Path
    keep_run_dir: bool
    restart: bool
    chunk_workers: int
    dask_scheduler: str
    dask_local: int
    dask_retries: int
    command: Sequence[str]  # the command line, recorded (redacted) in the STAC sidecar


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        return tuple(value.items())
    return tuple(tuple(kv) for kv in value)  # type: ignore[misc]


def _names(value: Any) -> tuple[str, ...]:
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(str(x).strip() for x in parts if str(x).strip())


def _strings(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _rescale(value: Any) -> tuple[tuple[float, float], ...]:
    pairs = []
    for r in [value] if isinstance(value, str) else value:
        if isinstance(r, str):
            try:
                lo, hi = (float(v) for v in r.split(","))
            except ValueError as e:
                raise ConfigError(f"`rescale` takes MIN,MAX, got {r!r}") from e
            pairs.append((lo, hi))
        else:
            pairs.append((float(r[0]), float(r[1])))
    return tuple(pairs)


#: flat name → (group, field name in the group's value, converter)
_Conv = Callable[[Any], Any] | None
_FIELDS: dict[str, tuple[str, str, _Conv]] = {
    **{k: ("read", k, None) for k in ("pixel_selection", "tilesize", "expression", "resampling")},
    "bidx": ("read", "bidx", tuple),
    "group_by": ("read", "group_by", None),
    "harmonize": ("read", "harmonize", None),
    "provenance": ("read", "provenance", lambda v: _names(v)),
    "command": ("run", "command", lambda v: tuple(str(a) for a in v)),
    **{k: ("qa", k, None) for k in ("mask_band", "mask_bits", "mask_expression")},
    "cog_profile": ("cog", "profile", None),
    "creation_options": ("cog", "creation_options", dict),
    "gdal_config": ("cog", "config", dict),
    "overview_resampling": ("cog", "overview_resampling", None),
    "tiler": ("http", "template", None),
    "tiler_params": ("http", "params", _pairs),
    "headers": ("http", "headers", _pairs),
    "retries": ("http", "retries", None),
    "timeout": ("http", "timeout", None),
    "backoff": ("http", "backoff", None),
    "http_seed": ("http", "seed", None),
    "stac": ("stac", "url", None),
    "collections": ("stac", "collections", _names),
    "seasons": ("stac", "seasons", _names),
    "query": ("stac", "query", _strings),
    **{
        k: ("stac", k, None)
        for k in ("datetime", "filter", "max_items", "sort_by", "save_mosaicjson")
    },
    "mosaicjson_asset": ("stac", "mosaicjson_asset", None),
    "rescale": ("visual", "rescale", _rescale),
    "color_ops": ("visual", "color_ops", None),
    **{
        k: ("executor", k, None)
        for k in ("chunk_workers", "dask_scheduler", "dask_local", "dask_retries")
    },
    "mosaicjson": ("source", "mosaicjson", None),
    "items": ("source", "items", None),
    "assets": ("run", "assets", _names),
    "bbox": ("run", "bbox", tuple),
}
_RUN_FIELDS = {f.name for f in dataclasses.fields(AssembleOptions)} - {"source"}


def _group(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat keyword arguments → {group: {field: value}}; None and empty values dropped."""
    groups: dict[str, dict[str, Any]] = {}
    unknown = sorted(k for k in options if k not in _FIELDS and k not in _RUN_FIELDS)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
    for key, value in options.items():
        group, name, convert = _FIELDS.get(key, ("run", key, None))
        if value is None or (group in ("stac", "visual", "qa") and value in ((), "")):
            continue
        groups.setdefault(group, {})[name] = convert(value) if convert else value
    return groups


def _qa_mask(
    band: Any = None, bits: str | None = None, expression: str | None = None
) -> QAMask | None:
    """QAMask from --mask-band / --mask-bits / --mask-expression."""
    if band is None:
        if bits or expression:
            raise ConfigError("`mask_bits`/`mask_expression` need `mask_band`")
        return None
    if bits and expression:
        raise ConfigError("give `mask_bits` or `mask_expression`, not both")
    if expression:
        return QAMask(str(band), "expression", expression=expression)
    kind, _, names = (bits or "landsat").partition(":")
    return QAMask(str(band), kind.strip().lower(), _names(names))


def _template_method(http: Mapping[str, Any]) -> str | None:
    """The pixel_selection a --tiler URL template (or a --tiler-param) sets, if any."""
    from urllib.parse import parse_qsl, urlsplit

    pairs = parse_qsl(urlsplit(str(http.get("template") or "")).query)
    pairs += list(http.get("params", ()))
    values = [v for k, v in pairs if k == "pixel_selection"]
    return values[0] if values else None


def _read_options(groups: dict[str, dict[str, Any]]) -> ReadOptions:
    read = groups.get("read", {})
    templated = _template_method(groups.get("http", {}))
    if templated is not None:
        given = read.get("pixel_selection")
        if given is not None and given != templated:
            raise ConfigError(
                f"the `tiler` template (or `tiler_params`) sets pixel_selection={templated} and "
                f"`pixel_selection` is {given}: give it in one place"
            )
        read["pixel_selection"] = templated
    qa = _qa_mask(**{k.removeprefix("mask_"): v for k, v in groups.get("qa", {}).items()})
    return ReadOptions(**read, qa_mask=qa) if qa else ReadOptions(**read)


def _source(groups: dict[str, dict[str, Any]], concurrency: int | None) -> Source:
    """The run's one source, from the source, stac and http option groups."""
    files = groups.get("source", {})
    stac_kw = groups.get("stac", {})
    if stac_kw and "url" not in stac_kw:
        names = ", ".join(f"`{k}`" for k in stac_kw)
        raise ConfigError(f"{names} need(s) `stac` URL")
    local: list[Index] = [StacSearch(**{"collections": (), **stac_kw})] if stac_kw else []
    if "mosaicjson" in files:
        local.append(MosaicJSONFile(files["mosaicjson"]))
    if "items" in files:
        local.append(ItemsFile(files["items"]))
    if len(local) > 1:
        raise ConfigError("give one source: `mosaicjson`, `items` or `stac`")
    http = groups.get("http", {})
    template = str(http.get("template") or "")
    if template.startswith("titiler-pgstac:"):
        if not isinstance(local[0] if local else None, StacSearch):
            raise ConfigError("`tiler` titiler-pgstac:URL needs `stac` (the search to register)")
        rest = tuple((k, v) for k, v in http.items() if k != "template")
        return PgstacTiler(template.split(":", 1)[1], local[0], rest)  # type: ignore[arg-type]
    if template:
        if concurrency:
            http["concurrency"] = concurrency
        return Tiler(HttpOptions(**http), local[0] if local else None)
    if not local:
        raise ConfigError(
            "give a source: `mosaicjson` FILE, `items` FILE, `stac` URL or `tiler` URL"
        )
    return local[0]


def build_options(**options: Any) -> AssembleOptions:
    """AssembleOptions from the flat keyword arguments of `assemble()` (`AssembleKwargs`).

    Raises:
        ConfigError: unknown or invalid option.
    """
    groups = _group(options)
    run = groups.get("run", {})
    if "zoom" not in run and "crs" not in run:
        raise ConfigError("`zoom` is required (or `crs` with `resolution`)")
    run.setdefault("zoom", None)
    if "bbox" in run and len(run["bbox"]) != 4:
        raise ConfigError(f"bbox needs 4 numbers W S E N, got {len(run['bbox'])}")
    visual = groups.get("visual")
    try:
        return AssembleOptions(
            source=_source(groups, run.get("concurrency")),
            read=_read_options(groups),
            cog=COGOptions(**groups.get("cog", {})),
            executor=ExecutorOptions(**groups.get("executor", {})),
            visual=Visual(**visual) if visual else None,
            **run,
        )
    except TypeError as e:
        raise ConfigError(str(e)) from e

"""mosaic_assembler.options: the validated options of a run and what a run returns."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import ConfigError
from mosaic_assembler.executors import ExecutorOptions
from mosaic_assembler.grid import AOI, check_zoom
from mosaic_assembler.sources.stac_params import StacSearch
from mosaic_assembler.tilers import QAMask, ReadOptions
from mosaic_assembler.tilers.http import HttpOptions
from mosaic_assembler.visual import Visual
from mosaic_assembler.writer import COGOptions

__all__ = ["AssembleOptions", "AssembleResult", "Progress", "StacSearch", "build_options"]


@dataclass(frozen=True)
class Progress:
    """Tiles finished so far; handed to the progress callback after every tile."""

    done: int
    empty: int
    failed: int
    total: int


@dataclass(frozen=True)
class AssembleOptions:
    """Everything a run needs, validated on construction.

    At most one of `bbox`/`aoi` (neither: the source's bounds). One of `mosaicjson`/`items`,
    or `http` (a dynamic tiler resolves the assets; a source may still be given to skip
    tiles that have none).
    """

    zoom: int
    bbox: tuple[float, float, float, float] | None = None
    aoi: Mapping[str, Any] | str | Path | None = None
    mosaicjson: str | Path | None = None
    items: str | Path | None = None
    assets: tuple[str, ...] = ()
    read: ReadOptions = field(default_factory=ReadOptions)
    cog: COGOptions = field(default_factory=COGOptions)
    clip: bool = False
    overwrite: bool = False
    allow_empty: bool = False
    allow_partial: bool = False
    max_pixels: float = 1e10
    concurrency: int | None = None
    http: HttpOptions | None = None
    chunk_tiles: int | None = None
    run_dir: str | Path | None = None
    keep_run_dir: bool = False
    restart: bool = False
    split_zoom: int | None = None
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    stac: StacSearch | None = None
    pgstac: str | None = None
    pgstac_http: Mapping[str, Any] | None = None
    visual: Visual | None = None

    def __post_init__(self) -> None:
        check_zoom(self.zoom)
        if self.bbox is not None:
            AOI.from_bbox(*self.bbox)  # validates
        if self.bbox is not None and self.aoi is not None:
            raise ConfigError("give either a bbox or an AOI, not both")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if not self.max_pixels > 0:
            raise ConfigError(f"max-pixels must be positive, got {self.max_pixels}")
        sources = [x for x in (self.mosaicjson, self.items, self.stac) if x is not None]
        if len(sources) > 1:
            raise ConfigError("give one source: --mosaicjson, --items or --stac")
        if self.http is None and self.pgstac is None and not sources:
            raise ConfigError(
                "give a source: --mosaicjson FILE, --items FILE, --stac URL or --tiler URL"
            )
        if self.stac is not None and self.bbox is None and self.aoi is None:
            raise ConfigError("--stac needs --bbox or --aoi (the search geometry)")
        if self.pgstac is not None and self.stac is None:
            raise ConfigError("--tiler titiler-pgstac:URL needs --stac (the search to register)")
        if self.http is not None and self.mosaicjson is None and self.items is None:
            if self.bbox is None and self.aoi is None:
                raise ConfigError("--tiler without a local source needs --bbox or --aoi")
        if self.chunk_tiles is not None and self.chunk_tiles < 1:
            raise ConfigError(f"chunk-tiles must be >= 1, got {self.chunk_tiles}")
        if self.split_zoom is not None:
            check_zoom(self.split_zoom)
            if self.split_zoom > self.zoom:
                raise ConfigError(
                    f"--split-zoom {self.split_zoom} must not be above --zoom {self.zoom}"
                )


@dataclass(frozen=True)
class AssembleResult:
    """What a run did.

    Attributes:
        path: the COG written (None for a dry run or an empty run).
        tiles_total: tiles the AOI covers.
        tiles_done: tiles written with data.
        tiles_empty: tiles with no data (no asset, or all pixels masked).
        tiles_failed: tiles that could not be read (only with allow_partial).
        chunks: chunks in the plan; chunks_resumed: of those, found finished in the run
            directory and not computed again.
        outputs: the split COGs (with split_zoom), else empty.
    """

    path: Path | None
    tiles_total: int
    tiles_done: int
    tiles_empty: int
    tiles_failed: int
    failed_tiles: tuple[tuple[int, int, int], ...]
    width: int
    height: int
    count: int
    dtype: str
    zoom: int
    tilesize: int
    bounds: tuple[float, float, float, float]
    estimated_bytes: int
    size_bytes: int
    seconds: Mapping[str, float]
    dry_run: bool = False
    chunks: int = 0
    chunks_resumed: int = 0
    run_dir: Path | None = None
    outputs: tuple[Path, ...] = ()

    def to_json(self) -> str:
        """The result as a JSON object (paths as strings)."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path) if self.path else None
        d["failed_tiles"] = [f"{z}/{x}/{y}" for x, y, z in self.failed_tiles]
        d["run_dir"] = str(self.run_dir) if self.run_dir else None
        d["outputs"] = [str(p) for p in self.outputs]
        return json.dumps(d)


def _qa_mask(band: Any, bits: str | None, expression: str | None) -> QAMask | None:
    """QAMask from --mask-band / --mask-bits / --mask-expression."""
    if band is None:
        if bits or expression:
            raise ConfigError("--mask-bits/--mask-expression need --mask-band")
        return None
    if bits and expression:
        raise ConfigError("give --mask-bits or --mask-expression, not both")
    if expression:
        return QAMask(str(band), "expression", expression=expression)
    kind, _, names = (bits or "landsat").partition(":")
    return QAMask(
        str(band), kind.strip().lower(), tuple(n.strip() for n in names.split(",") if n.strip())
    )


def _template_method(template: str, params: Any = None) -> str | None:
    """The pixel_selection a --tiler URL template (or a --tiler-param) sets, if any."""
    from urllib.parse import parse_qsl, urlsplit

    pairs = parse_qsl(urlsplit(template).query)
    if isinstance(params, Mapping):
        pairs += list(params.items())
    elif params:
        pairs += [tuple(kv) for kv in params]
    values = [v for k, v in pairs if k == "pixel_selection"]
    return values[0] if values else None


def build_options(**options: Any) -> AssembleOptions:
    """AssembleOptions from flat keyword arguments.

    Raises:
        ConfigError: unknown or invalid option.
    """
    read_keys = {f.name for f in dataclasses.fields(ReadOptions)}
    cog_map = {
        "cog_profile": "profile",
        "creation_options": "creation_options",
        "gdal_config": "config",
        "overview_resampling": "overview_resampling",
    }
    http_map = {
        "tiler": "template",
        "tiler_params": "params",
        "headers": "headers",
        "retries": "retries",
        "timeout": "timeout",
        "http_seed": "seed",
        "backoff": "backoff",
    }
    read_kw = {k: options.pop(k) for k in list(options) if k in read_keys}
    qa = _qa_mask(
        options.pop("mask_band", None),
        options.pop("mask_bits", None),
        options.pop("mask_expression", None),
    )
    if qa is not None:
        read_kw["qa_mask"] = qa
    http_kw = {http_map[k]: options.pop(k) for k in list(options) if k in http_map}
    templated = _template_method(str(http_kw.get("template") or ""), http_kw.get("params"))
    if templated is not None:
        given = read_kw.get("pixel_selection")
        if given is not None and given != templated:
            raise ConfigError(
                f"the --tiler template (or --tiler-param) sets pixel_selection={templated} and "
                f"--pixel-selection is {given}: give it in one place"
            )
        read_kw["pixel_selection"] = templated
    read_kw = {k: v for k, v in read_kw.items() if not (k == "pixel_selection" and v is None)}
    for key in ("params", "headers"):
        if isinstance(http_kw.get(key), Mapping):
            http_kw[key] = tuple(http_kw[key].items())
        elif http_kw.get(key) is not None:
            http_kw[key] = tuple(tuple(kv) for kv in http_kw[key])
    http_kw = {k: v for k, v in http_kw.items() if v is not None}
    if str(http_kw.get("template", "")).startswith("titiler-pgstac:"):
        options["pgstac"] = http_kw["template"].split(":", 1)[1]
        options["pgstac_http"] = {k: v for k, v in http_kw.items() if k != "template"}
    elif http_kw.get("template"):
        if options.get("concurrency"):
            http_kw["concurrency"] = options["concurrency"]
        options["http"] = HttpOptions(**http_kw)
    rescale, color_ops = options.pop("rescale", None), options.pop("color_ops", None)
    if rescale or color_ops:
        pairs = []
        for r in [rescale] if isinstance(rescale, str) else rescale or ():
            if isinstance(r, str):
                try:
                    lo, hi = (float(v) for v in r.split(","))
                except ValueError as e:
                    raise ConfigError(f"--rescale takes MIN,MAX, got {r!r}") from e
                pairs.append((lo, hi))
            else:
                pairs.append((float(r[0]), float(r[1])))
        options["visual"] = Visual(tuple(pairs), color_ops or None)
    stac_map = {
        "stac": "url",
        "collections": "collections",
        "datetime": "datetime",
        "query": "query",
        "filter": "filter",
        "max_items": "max_items",
        "seasons": "seasons",
        "sort_by": "sort_by",
        "save_mosaicjson": "save_mosaicjson",
        "mosaicjson_asset": "mosaicjson_asset",
    }
    stac_kw = {stac_map[k]: options.pop(k) for k in list(options) if k in stac_map}
    stac_kw = {k: v for k, v in stac_kw.items() if v not in (None, (), "")}
    if stac_kw.get("url"):
        for key in ("collections", "seasons"):
            v = stac_kw.get(key, ())
            stac_kw[key] = tuple(
                x.strip() for x in (v.split(",") if isinstance(v, str) else v) if x.strip()
            )
        if isinstance(stac_kw.get("query"), str):
            stac_kw["query"] = (stac_kw["query"],)
        elif stac_kw.get("query") is not None:
            stac_kw["query"] = tuple(stac_kw["query"])
        options["stac"] = StacSearch(**stac_kw)
    elif stac_kw:
        raise ConfigError(
            f"{', '.join('--' + k.replace('_', '-') for k in stac_kw)} need(s) --stac URL"
        )

    cog_kw = {cog_map[k]: options.pop(k) for k in list(options) if k in cog_map}
    exec_keys = {f.name for f in dataclasses.fields(ExecutorOptions)}
    exec_kw = {k: options.pop(k) for k in list(options) if k in exec_keys}
    exec_kw = {k: v for k, v in exec_kw.items() if v is not None}
    if "bidx" in read_kw and read_kw["bidx"] is not None:
        read_kw["bidx"] = tuple(read_kw["bidx"])
    if "assets" in options and options["assets"] is not None:
        a = options["assets"]
        options["assets"] = tuple(a.split(",")) if isinstance(a, str) else tuple(a)
    if options.get("bbox") is not None:
        bbox = tuple(options["bbox"])
        if len(bbox) != 4:
            raise ConfigError(f"bbox needs 4 numbers W S E N, got {len(bbox)}")
        options["bbox"] = bbox
    known = {f.name for f in dataclasses.fields(AssembleOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
    if "zoom" not in options:
        raise ConfigError("zoom is required")
    try:
        opts = AssembleOptions(
            read=ReadOptions(**read_kw),
            cog=COGOptions(**cog_kw),
            executor=ExecutorOptions(**exec_kw),
            **options,
        )
    except TypeError as e:
        raise ConfigError(str(e)) from e
    return opts

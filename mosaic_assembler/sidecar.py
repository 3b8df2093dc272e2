"""The STAC Item beside every output (`OUT.json`), and the collection of a split output.

The Item describes the written COG, read back from it (so it holds on any grid): `proj:code`
(or `proj:wkt2` when the CRS has no EPSG code), `proj:shape`, `proj:transform`, `proj:bbox`,
`raster:bands`; `start_datetime`/`end_datetime` of the observations used (the items the
asset index gave the output's tiles); those items' ids (above `MAX_IDS`, their count and a
sha256 of the sorted ids); the method, grouping, harmonisation and grid; the software
version; the command line with credentials redacted. STAC 1.1.0, whose core schemas pystac
ships: it validates offline.

Dependency order: web, _grouping <- sidecar (rasterio, shapely; no other module of ours).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds
from shapely.geometry import MultiPolygon, box, mapping

from mosaic_assembler import web
from mosaic_assembler._grouping import parse_datetime

__all__ = [
    "MAX_IDS",
    "collection",
    "items_summary",
    "output_item",
    "redact_command",
    "write_json",
]

STAC_VERSION = "1.1.0"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

#: Above this many input items, the Item records their count and a hash instead of the ids.
MAX_IDS = 1000

#: Options whose value is a credential (or may hold one): the whole value is redacted.
_SECRET_OPTIONS = ("--header", "-H")
#: Options of KEY=VALUE form whose value is redacted when KEY looks like a credential.
_PAIR_OPTIONS = ("--tiler-param",)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def redact_command(argv: Sequence[str], headers: Iterable[tuple[str, str]] = ()) -> list[str]:
    """A command line with credentials replaced by `***`.

    The value of every `--header`, the value of a `--tiler-param` whose key looks like a
    credential, header values wherever else they appear, and credential query parameters of
    URLs (`web.redact`).
    """
    secrets = web.secrets_of(headers, [a for a in argv if "://" in a])
    out: list[str] = []
    pending: str | None = None
    for arg in argv:
        if pending is not None:
            arg = _redact_value(pending, arg)
            pending = None
        elif arg in _SECRET_OPTIONS or arg in _PAIR_OPTIONS:
            pending = arg
        elif "=" in arg and arg.split("=", 1)[0] in (*_SECRET_OPTIONS, *_PAIR_OPTIONS):
            flag, value = arg.split("=", 1)
            arg = f"{flag}={_redact_value(flag, value)}"
        out.append(web.redact(arg, secrets))
    return out


def _redact_value(flag: str, value: str) -> str:
    name, sep, rest = value.partition("=")
    if flag in _SECRET_OPTIONS:
        return f"{name}={web.REDACTED}" if sep else web.REDACTED
    if sep and web.is_credential_name(name) and rest:
        return f"{name}={web.REDACTED}"
    return value


def items_summary(assets: Iterable[Any]) -> dict[str, Any]:
    """What the Item says about its inputs: ids (or count + hash) and their datetime range."""
    ids: set[str] = set()
    times: list[dt.datetime] = []
    for a in assets:
        item_id = getattr(a, "id", None)
        ids.add(item_id if item_id is not None else web.redact(str(a)))
        when = getattr(a, "datetime", "")
        if when:
            try:
                times.append(parse_datetime(when, str(item_id)))
            except ValueError:
                pass
    ordered = sorted(ids)
    out: dict[str, Any] = {"mosaic:items_count": len(ordered)}
    if len(ordered) > MAX_IDS:
        out["mosaic:items_sha256"] = hashlib.sha256("\n".join(ordered).encode()).hexdigest()
    else:
        out["mosaic:items"] = ordered
    if times:
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
        out["start_datetime"] = min(times).strftime(fmt)
        out["end_datetime"] = max(times).strftime(fmt)
    return out


def _footprint(bounds: Sequence[float], crs: Any) -> tuple[dict[str, Any], list[float]]:
    """Lon/lat geometry and bbox of projected bounds (split in two across 180°)."""
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    if east > 180.0 or west < -180.0:  # an output that runs east across the antimeridian
        west, east = (west + 180.0) % 360.0 - 180.0, (east + 180.0) % 360.0 - 180.0
    if west > east:
        geom = MultiPolygon([box(west, south, 180.0, north), box(-180.0, south, east, north)])
        return dict(mapping(geom)), [west, south, east, north]
    return dict(mapping(box(west, south, east, north))), [west, south, east, north]


def _proj(src: Any) -> dict[str, Any]:
    t = src.transform
    epsg = src.crs.to_epsg() if src.crs else None
    proj: dict[str, Any] = {"proj:code": f"EPSG:{epsg}" if epsg else None}
    if not epsg and src.crs:
        proj["proj:wkt2"] = src.crs.to_wkt()
    proj.update(
        {
            "proj:shape": [src.height, src.width],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "proj:bbox": list(src.bounds),
        }
    )
    return proj


def _raster_bands(src: Any) -> list[dict[str, Any]]:
    res = abs(src.transform.a)
    return [
        {"data_type": dtype, "spatial_resolution": res, **({"name": d} if d else {})}
        for dtype, d in zip(src.dtypes, src.descriptions, strict=True)
    ]


def output_item(
    cog: Path,
    item_id: str,
    run: Mapping[str, Any],
    companions: Mapping[str, Path] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """The STAC Item of one written COG.

    Args:
        cog: the COG as written (read for its grid and bands); its href is `./NAME`.
        item_id: the Item's id.
        run: `items_summary` of the inputs and the `mosaic:*` properties of the run.
        companions: provenance kind → COG beside it (assets `count`, `date`).
    """
    with rasterio.open(cog) as src:
        geom, bbox = _footprint(src.bounds, src.crs)
        proj, bands = _proj(src), _raster_bands(src)
    props: dict[str, Any] = dict(run)
    now = _now()
    if "start_datetime" in props:
        props["datetime"] = None
    else:
        props["datetime"] = now  # inputs without datetimes (a mosaicJSON): when it was made
    props["created"] = now
    from mosaic_assembler import __version__  # the package's __init__ imports this module

    props["processing:software"] = {"mosaic-assembler": __version__}
    props.update(proj)
    assets: dict[str, Any] = {
        "data": {"href": f"./{cog.name}", "type": COG_TYPE, "roles": ["data"],
                 "raster:bands": bands},
    }  # fmt: skip
    for kind, path in dict(companions).items():
        with rasterio.open(path) as src:
            extra = _raster_bands(src)
        assets[kind] = {"href": f"./{path.name}", "type": COG_TYPE, "roles": ["metadata"],
                        "title": f"provenance: {kind}", "raster:bands": extra}  # fmt: skip
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROJECTION, RASTER, PROCESSING],
        "id": item_id,
        "geometry": geom,
        "bbox": bbox,
        "properties": props,
        "assets": assets,
        "links": [],
    }


def collection(
    collection_id: str, items: Sequence[Mapping[str, Any]], run: Mapping[str, Any]
) -> dict[str, Any]:
    """The STAC Collection of a split output's Items (links to `./{id}.json`)."""
    boxes = [i["bbox"] for i in items]
    starts = [i["properties"].get("start_datetime") for i in items]
    ends = [i["properties"].get("end_datetime") for i in items]
    interval = [
        min((s for s in starts if s), default=None),
        max((e for e in ends if e), default=None),
    ]
    summary = {
        k: v
        for k, v in run.items()
        if k.startswith("mosaic:") and "items" not in k and v not in (None, [], "")
    }
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": collection_id,
        "description": "Split outputs of one mosaic-assembler run",
        "license": "other",
        "extent": {
            "spatial": {
                "bbox": [
                    [
                        min(b[0] for b in boxes),
                        min(b[1] for b in boxes),
                        max(b[2] for b in boxes),
                        max(b[3] for b in boxes),
                    ]
                ]
            },
            "temporal": {"interval": [interval]},
        },  # fmt: skip
        "summaries": {k: [v] if not isinstance(v, list) else v for k, v in summary.items()},
        "links": [
            {"rel": "item", "href": f"./{i['id']}.json", "type": "application/geo+json"}
            for i in items
        ],  # fmt: skip
    }


def write_json(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write a JSON document atomically (a temporary file renamed into place)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    return path

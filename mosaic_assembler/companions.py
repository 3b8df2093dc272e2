"""The files beside an output: provenance COGs (`OUT.count.tif`, `OUT.date.tif`) and `OUT.json`.

For a single COG they are written in the output's work directory and renamed into place
(uploaded beside it, for an s3:// output) before the output itself (an output that exists
has its companions); for a split output,
each `{name}.tif` of the directory gets `{name}.count.tif`, `{name}.date.tif` and
`{name}.json`, and the directory a `collection.json`, all inside the directory that is
swapped in whole.

Dependency order: provenance, sidecar, writer, splits <- companions <- pipeline.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import OutputError
from mosaic_assembler.grid import Chunk, Plan
from mosaic_assembler.provenance import DTYPES, provenance_path, sidecar_path
from mosaic_assembler.sidecar import (
    collection,
    items_summary,
    output_item,
    redact_command,
    write_json,
)
from mosaic_assembler.storage import S3Url, is_s3
from mosaic_assembler.types import BandInfo, Tile
from mosaic_assembler.writer import ChunkOverviews, COGOptions, finalize_cog, write_vrt

__all__ = [
    "check_companions",
    "companion_paths",
    "provenance_cog_options",
    "place_companions",
    "provenance_overviews",
    "run_properties",
    "stale_companions",
    "write_companions",
]

_LOSSY = ("webp", "jpeg")
_LOSSY_OPTIONS = ("QUALITY", "OVERVIEW_RESAMPLING", "JPEG_QUALITY", "WEBP_LEVEL", "WEBP_LOSSLESS")


def companion_paths(output: Path, provenance: Sequence[str]) -> list[Path]:
    """The files a single-COG run writes beside `output`."""
    return [*(provenance_path(output, k) for k in provenance), sidecar_path(output)]


def _beside(output: str, name: str) -> str:
    """The s3:// URL of `name` in the same prefix as the s3:// `output`."""
    return f"{output.rpartition('/')[0]}/{name}"


def check_companions(output: Path | str, provenance: Sequence[str], overwrite: bool) -> None:
    """Refuse a companion path that exists (without `overwrite`) or is a directory.

    Raises:
        OutputError: with the path and why.
    """
    if is_s3(output):
        from mosaic_assembler.storage import _s3

        for path in companion_paths(Path(str(output).rpartition("/")[2]), provenance):
            url = _beside(str(output), path.name)
            if not overwrite and _s3.head(S3Url.parse(url), "output") is not None:
                raise OutputError(
                    f"{url!r} (written beside the output) exists; use `overwrite` to replace it"
                )
        return
    for path in companion_paths(Path(output), provenance):
        if path.is_dir():
            raise OutputError(f"{str(path)!r} (written beside the output) is a directory")
        if os.path.lexists(path) and not overwrite:
            raise OutputError(
                f"{str(path)!r} (written beside the output) exists; use `overwrite` to replace it"
            )


def place_companions(
    output: Path | str, companions: Sequence[tuple[Path, Path]], overwrite: bool
) -> None:
    """Put finished companion files beside the output (renamed, or uploaded to S3).

    Beside an s3:// output each is uploaded create-only unless `overwrite`, and appears
    complete.
    """
    if is_s3(output):
        from mosaic_assembler.storage import _s3

        for done, final in companions:
            url = S3Url.parse(_beside(str(output), final.name))
            _s3.put_file(done, url, create_only=not overwrite)
        return
    for done, final in companions:
        os.replace(done, final)


def stale_companions(output: Path | str, provenance: Sequence[str]) -> list[Path]:
    """Provenance COGs beside a local `output` that an overwrite would leave behind.

    Only files the tool wrote: those listed as assets by the `OUT.json` it wrote beside the
    output before (its `processing:software` is ours), of a kind this run does not write,
    and still regular files (not links). Read before the new `OUT.json` replaces the old.
    """
    import json

    if is_s3(output):
        return []
    out = Path(output)
    try:
        doc = json.loads(sidecar_path(out).read_text())
        ours = "mosaic-assembler" in doc["properties"]["processing:software"]
        assets = doc["assets"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return []
    if not ours or not isinstance(assets, dict):
        return []
    stale = []
    for kind in ("count", "date"):
        path = provenance_path(out, kind)
        listed = assets.get(kind)
        if kind in provenance or not isinstance(listed, dict):
            continue
        if listed.get("href") == f"./{path.name}" and path.is_file() and not path.is_symlink():
            stale.append(path)
    return stale


def provenance_overviews(overviews: ChunkOverviews | None) -> ChunkOverviews | None:
    """The chunk overviews of provenance files: the data's levels, nearest.

    A date or a count averaged is no observation's.
    """
    return dataclasses.replace(overviews, resampling="nearest") if overviews else None


def provenance_cog_options(cog: COGOptions) -> COGOptions:
    """The COG options of provenance rasters: the run's, lossless and with nearest overviews."""
    creation = {k: v for k, v in cog.creation_options.items() if k.upper() not in _LOSSY_OPTIONS}
    return dataclasses.replace(
        cog,
        profile="deflate" if cog.profile in _LOSSY else cog.profile,
        creation_options=creation,
        overview_resampling="nearest",
    )


def run_properties(opts: Any, read: Any, plan: Plan) -> dict[str, Any]:
    """The `mosaic:*` properties of the run (method, grouping, grid, command)."""
    from mosaic_assembler.tilers.http import expand_env

    http = getattr(opts, "http", None)
    headers = list(http.headers) if http is not None else []
    pgstac = getattr(opts.source, "http", ())  # titiler-pgstac: (name, value) pairs
    if isinstance(pgstac, tuple):
        headers += list(dict(pgstac).get("headers", ()) or ())
    command = redact_command(opts.command, [(k, expand_env(v)) for k, v in headers])
    qa = read.qa_mask
    return {
        "mosaic:method": read.pixel_selection,
        "mosaic:group_by": read.group_by,
        "mosaic:harmonize": read.harmonize,
        "mosaic:provenance": list(read.provenance),
        "mosaic:mask_band": qa.band if qa is not None else None,
        "mosaic:expression": read.expression,
        "mosaic:grid": {
            "tms": str(
                getattr(plan, "tms_id", None) or getattr(opts, "tms", None) or "WebMercatorQuad"
            ),
            "zoom": plan.zoom,
            "tilesize": plan.tilesize,
        },  # fmt: skip
        "mosaic:command": command or None,
    }


def _assets_in(jobs: Iterable[tuple[Tile, Sequence[Any]]]) -> list[Any]:
    return [a for _, assets in jobs for a in assets]


def _provenance_cog(
    plan: Plan,
    parts: list[tuple[Chunk, Path]],
    kind: str,
    count: int,
    dest: Path,
    cog: COGOptions,
    overviews: ChunkOverviews | None,
    window: tuple[int, int, int, int] | None = None,
) -> Path:
    """One provenance COG from the chunks' `KEY.{kind}.tif` files (over `window`, or all)."""
    kind_parts = []
    for chunk, path in parts:
        kpath = path.with_name(f"{chunk.key}.{kind}.tif")
        # on S3 (a /vsis3/ path) the run state checked them: each was uploaded before its chunk
        if not is_s3(kpath) and not kpath.exists():
            raise OutputError(
                f"chunk {chunk.key} has no {kind} provenance file: rerun with `restart`"
            )
        kind_parts.append((chunk, kpath))
    work = dest.parent / f".{dest.name}.vrt"
    work.mkdir(exist_ok=True)
    try:
        bands = BandInfo(count, DTYPES[kind], ())
        vrt = write_vrt(
            work / "p.vrt", plan, kind_parts, bands, window, overviews=overviews, cog=cog
        )
        finalize_cog(vrt, dest, cog, existing_overviews=overviews is not None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _date_bands(parts: list[tuple[Chunk, Path]]) -> int:
    import rasterio

    chunk, path = parts[0]
    with rasterio.open(path.with_name(f"{chunk.key}.date.tif")) as src:
        return int(src.count)


def write_companions(
    r: Any,
    p: Any,
    parts: list[tuple[Chunk, Path]],
    staged: Path,
    workdir: Path,
) -> list[tuple[Path, Path]]:
    """Write the provenance COGs and the STAC sidecar(s) of a finished output.

    Args:
        r: the run's `Resolved`.
        p: its `Planned`.
        parts: (chunk, chunk file) of the chunks with data.
        staged: the written COG (or split directory) in `workdir`.
        workdir: the output's work directory.

    Returns:
        (staged file, final path) of the files to rename into place before the output (none
        for a split output: they are inside its directory).
    """
    opts, read, plan = r.opts, r.read, p.plan
    kinds = tuple(read.provenance)
    cog = provenance_cog_options(opts.cog)
    overviews = provenance_overviews(p.overviews)
    counts = {"count": 1, "date": _date_bands(parts) if "date" in kinds else 0}
    run = run_properties(opts, read, plan)
    if opts.split_zoom is None:
        made: dict[str, Path] = {}
        for kind in kinds:
            dest = workdir / provenance_path(staged, kind).name
            made[kind] = _provenance_cog(
                plan, parts, kind, counts[kind], dest, cog, overviews, plan.window
            )
        output = Path(str(r.output).rpartition("/")[2]) if is_s3(r.output) else r.output
        item = output_item(staged, output.stem if output.suffix else output.name,
                           {**items_summary(_assets_in(p.jobs)), **run}, made)  # fmt: skip
        # the staged names are out.tif, out.count.tif: the hrefs name the final files
        item["assets"]["data"]["href"] = f"./{output.name}"
        for kind in kinds:
            item["assets"][kind]["href"] = f"./{provenance_path(output, kind).name}"
        sidecar = write_json(workdir / sidecar_path(staged).name, item)
        finals = [(made[k], provenance_path(output, k)) for k in kinds]
        return [*finals, (sidecar, sidecar_path(output))]
    return _split_companions(r, p, parts, staged, kinds, counts, cog, overviews, run)


def _split_companions(
    r: Any,
    p: Any,
    parts: list[tuple[Chunk, Path]],
    staged: Path,
    kinds: tuple[str, ...],
    counts: dict[str, int],
    cog: COGOptions,
    overviews: ChunkOverviews | None,
    run: dict[str, Any],
) -> list[tuple[Path, Path]]:
    from mosaic_assembler.splits import split_windows

    plan = p.plan
    tiles = {t for chunk, _ in parts for t in chunk.tiles}
    items = []
    for name, window in split_windows(plan, tiles, r.opts.split_zoom).items():
        row0, col0, height, width = window
        made = {
            kind: _provenance_cog(plan, parts, kind, counts[kind], staged / f"{name}.{kind}.tif",
                                  cog, overviews, window)
            for kind in kinds
        }  # fmt: skip
        jobs = [
            (t, a)
            for t, a in p.jobs
            if row0 <= plan.offset(t)[0] < row0 + height
            and col0 <= plan.offset(t)[1] < col0 + width
        ]
        item = output_item(staged / f"{name}.tif", name, {**items_summary(_assets_in(jobs)), **run},
                           made)  # fmt: skip
        item["links"] = [{"rel": "collection", "href": "./collection.json",
                          "type": "application/json"}]  # fmt: skip
        item["collection"] = "mosaic"
        write_json(staged / f"{name}.json", item)
        items.append(item)
    write_json(staged / "collection.json", collection("mosaic", items, run))
    return []

"""What a run writes: chip GeoTIFFs, composite PNGs, per-point value parts and values.csv.

Every file is written under a temporary name and renamed into place, so a file that exists
is whole (a killed run leaves at most `.tmp` files, which the rerun overwrites)::

    OUT_DIR/chips/<point>/<date>_<item>.tif     the chip: one band per asset, its mask
    OUT_DIR/<composite>/<point>/<date>_<item>.png (+ .png.aux.xml: its CRS and transform)
    OUT_DIR/values/<point>.csv                  the point's rows (values.csv is their union)
    OUT_DIR/values.csv
    OUT_DIR/ledger.jsonl                        per point: done / empty / failed
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import numpy

from mosaic_assembler.chips._composites import RESCALES
from mosaic_assembler.chips._items import ItemRef
from mosaic_assembler.chips._points import Point
from mosaic_assembler.chips._spec import ChipSpec

__all__ = [
    "assemble_values",
    "chip_name",
    "columns",
    "encode_png",
    "pam_xml",
    "part_is_whole",
    "value_row",
    "write_chip",
    "write_part",
]

FIXED_COLUMNS = ("item_id", "collection", "datetime", "date", "year", "doy")
#: Encoding of the chip GeoTIFFs: writing files is most of a run's time. ZSTD level 1 with
#: the predictor writes a 4-band chip in 8.8 ms instead of 17.7 (DEFLATE 6) for 4 % more
#: bytes; band interleaving (each band's strips compressed apart) then takes 5.6 ms CPU
#: instead of 7.5 (pixel interleaving) for the same size, 296 KiB per 255-px uint16 chip
#: (scripts/bench_chips.py machine, 2026-12). Pixels are the same.
TIFF_OPTIONS = {"compress": "zstd", "zstd_level": 1, "predictor": 2, "interleave": "band"}
#: zlib level of the PNG composites: level 1 with the "sub" filter on every row writes a
#: 255-px RGB chip in about a third of GDAL's PNG driver's time (level 6, adaptive filters,
#: through a MEM copy) for about 10 % more bytes; the decoded pixels are the same.
PNG_ZLEVEL = 1


def chip_name(ref: ItemRef) -> str:
    """`<date>_<item id>` (the item whose grid the chip is in)."""
    return f"{ref.date}_{ref.id}"


def columns(spec: ChipSpec) -> list[str]:
    """The header of values.csv."""
    qa = ["qa"] if spec.mask is not None else []
    return [*spec.id_fields, *FIXED_COLUMNS, *spec.assets, *qa, "rescale"]


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, numpy.generic) else v


def value_row(
    spec: ChipSpec, p: Point, ref: ItemRef, values: dict[str, Any], qa: int | None
) -> dict[str, Any]:
    """One row of values.csv."""
    day = dt.date.fromisoformat(ref.date)
    row: dict[str, Any] = dict(zip(spec.id_fields, p.ids, strict=True))
    row.update(item_id=ref.id, collection=ref.collection, datetime=ref.datetime, date=ref.date,
               year=day.year, doy=day.timetuple().tm_yday)  # fmt: skip
    row.update({k: _scalar(values[k]) for k in spec.assets})
    if qa is not None:
        row["qa"] = qa
    row["rescale"] = spec.rescale
    return row


def _replace_into(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)


def write_chip(
    spec: ChipSpec,
    p: Point,
    name: str,
    bands: Sequence[numpy.ndarray],
    valid: numpy.ndarray,
    crs: Any,
    transform: Any,
    nodata: float | None,
    pngs: dict[str, numpy.ndarray],
) -> None:
    """The chip GeoTIFF (source dtype and nodata, its mask) and the PNGs with their aux.xml.

    The mask is written as an internal mask band unless the nodata value says exactly the
    same in every band (a pixel is nodata in a band iff it is invalid): then GDAL's masks
    from the nodata value are that mask already, and the chip is written a third faster.
    """
    import rasterio

    root = Path(spec.out_dir)
    data = numpy.stack(bands)
    path = root / "chips" / p.key / f"{name}.tif"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=len(bands),
                   dtype=data.dtype, crs=crs, transform=transform, **TIFF_OPTIONS,
                   tiled=data.shape[1] >= 256, nodata=nodata)  # fmt: skip
    by_nodata = nodata is not None and bool(((data == nodata) == ~valid[None]).all())
    # (GDAL_TIFF_INTERNAL_MASK is set by the batch's rasterio.Env: an Env per chip would
    # build a boto3 session per chip whenever AWS variables are set: ~100 ms each measured)
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        if not by_nodata:
            dst.write_mask(valid.astype("uint8") * 255)
    _replace_into(tmp, path)
    aux = pam_xml(crs, transform) if pngs else ""
    for comp, rgb in pngs.items():
        png = root / comp / p.key / f"{name}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        # the georeferencing first: a PNG that exists is whole and georeferenced
        _write_bytes(png.with_name(png.name + ".aux.xml"), aux.encode())
        _write_bytes(png, encode_png(rgb))


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
    _replace_into(tmp, path)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_png(rgb: numpy.ndarray) -> bytes:
    """An 8-bit RGB PNG of a (3, height, width) array: the "sub" filter, zlib `PNG_ZLEVEL`."""
    _, height, width = rgb.shape
    pixels = numpy.ascontiguousarray(rgb.transpose(1, 2, 0), dtype=numpy.uint8)
    rows = numpy.empty((height, width * 3 + 1), dtype=numpy.uint8)
    rows[:, 0] = 1  # filter type 1 (sub): each byte minus the same channel's byte to the left
    body = rows[:, 1:].reshape(height, width, 3)
    body[:, 0] = pixels[:, 0]
    numpy.subtract(pixels[:, 1:], pixels[:, :-1], out=body[:, 1:])  # modulo 256, as PNG's
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB
    return b"".join((
        b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header),
        _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_ZLEVEL)), _png_chunk(b"IEND", b""),
    ))  # fmt: skip


def pam_xml(crs: Any, transform: Any) -> str:
    """The .aux.xml GDAL writes beside a georeferenced PNG (its CRS and geotransform).

    The seed writes its PNGs through rasterio with `crs` and `transform`: GDAL's PNG driver
    keeps them in this sidecar, which GDAL, rasterio and QGIS read back with the PNG.
    """
    gt = ",".join(f"{v: .16e}" for v in transform.to_gdal())
    wkt = xml_escape(crs.to_wkt())
    return (
        "<PAMDataset>\n"
        f'  <SRS dataAxisToSRSAxisMapping="1,2">{wkt}</SRS>\n'
        f"  <GeoTransform>{gt}</GeoTransform>\n"
        "</PAMDataset>\n"
    )


def _csv_text(header: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _write_atomic(path: Path, text: str, durable: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    _replace_into(tmp, path)


def part_path(out_dir: str | Path, key: str) -> Path:
    """The point's part of values.csv."""
    return Path(out_dir) / "values" / f"{key}.csv"


def write_part(spec: ChipSpec, p: Point, rows: list[dict[str, Any]]) -> None:
    """The point's rows, date order (a point with no row gets a header-only part).

    Renamed into place whole but not fsync'ed: the ledger line that follows is the durable
    record (one fsync per batch), and `part_is_whole` checks the part against it on resume.
    """
    rows = sorted(rows, key=lambda r: (r["date"], r["datetime"], r["item_id"]))
    _write_atomic(part_path(spec.out_dir, p.key), _csv_text(columns(spec), rows), False)


def part_is_whole(spec: ChipSpec, key: str, rows: int) -> bool:
    """The point's part exists with the header and the `rows` rows its ledger line counts."""
    try:
        text = part_path(spec.out_dir, key).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    records = list(csv.reader(io.StringIO(text, newline="")))
    return (text.endswith("\n") and len(records) == rows + 1
            and records[0] == columns(spec))  # fmt: skip


def assemble_values(spec: ChipSpec, keys: Sequence[str]) -> tuple[Path, int]:
    """values.csv from the parts of `keys` (POINTS order), written atomically."""
    header = columns(spec)
    out: list[dict[str, Any]] = []
    for key in keys:
        part = part_path(spec.out_dir, key)
        if part.exists():
            out.extend(csv.DictReader(part.read_text(encoding="utf-8").splitlines()))
    path = Path(spec.out_dir) / "values.csv"
    _write_atomic(path, _csv_text(header, out))
    return path, len(out)


def rescale_note(rescale: str) -> str:
    """What the `rescale` column's value means."""
    return RESCALES[rescale]

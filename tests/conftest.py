"""Fixtures: generated COGs (overlapping, several CRSs, nodata collars), sources over them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from s3_fixtures import moto_server, s3  # noqa: F401  (fixtures: a real S3 server)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def real_data_path() -> Path:
    """../shared/data/real, or skip (fail under CI=true, where it must exist)."""
    if not SHARED.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real test data missing under CI: {SHARED}")
        pytest.skip(f"real-data test: {SHARED} not found (a fresh clone has no ../shared)")
    return SHARED


@pytest.fixture
def real_data() -> Path:
    return real_data_path()


def _smooth(rng: numpy.random.Generator, shape: tuple[int, int], lo: int, hi: int) -> numpy.ndarray:
    small = rng.random((shape[0] // 16 + 2, shape[1] // 16 + 2))
    big = numpy.kron(small, numpy.ones((16, 16)))[: shape[0], : shape[1]]
    noise = rng.random(shape) * 0.15
    return (lo + (hi - lo) * (0.85 * big + noise)).astype("float64")


def write_cog(
    path: Path,
    data: numpy.ndarray,
    crs: str,
    transform,
    nodata: float | None = 0,
    blocksize: int = 256,
) -> Path:
    """Write an array as a COG (GDAL COG driver)."""
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
    rasterio.shutil.copy(tmp, path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=str(blocksize))
    tmp.unlink()
    return path


def make_scene(
    path: Path,
    crs: str,
    center_lonlat: tuple[float, float],
    size: int,
    res: float,
    seed: int,
    count: int = 3,
    dtype: str = "uint16",
    nodata: float | None = 0,
    collar: bool = True,
) -> Path:
    """A scene of smooth random data around a lon/lat point, with a tilted nodata collar."""
    rng = numpy.random.default_rng(seed)
    xs, ys = warp_transform("EPSG:4326", crs, [center_lonlat[0]], [center_lonlat[1]])
    left, top = xs[0] - size * res / 2, ys[0] + size * res / 2
    transform = from_origin(left, top, res, res)
    lo, hi = (1, 250) if dtype == "uint8" else (5000, 30000)
    data = numpy.stack([_smooth(rng, (size, size), lo, hi) for _ in range(count)])
    if numpy.dtype(dtype).kind == "f":
        data = data / 10000.0
    data = data.astype(dtype)
    if collar:
        r, c = numpy.mgrid[0:size, 0:size]
        # a tilted valid footprint like a Landsat scene
        inside = (
            (c > 0.12 * size + 0.2 * r)
            & (c < 0.98 * size - 0.05 * (size - r))
            & (r > 0.05 * size + 0.1 * c)
            & (r < 0.95 * size)
        )
        fill = 0 if nodata is None else nodata
        data[:, ~inside] = fill
    return write_cog(path, data, crs, transform, nodata=nodata)


@dataclass(frozen=True)
class Scenes:
    """Generated overlapping scenes and sources over them."""

    dir: Path
    paths: tuple[Path, ...]
    bbox: tuple[float, float, float, float]
    zoom: int
    mosaicjson: Path


def bounds_lonlat(path: Path) -> tuple[float, float, float, float]:
    with rasterio.open(path) as src:
        return transform_bounds(src.crs, CRS.from_epsg(4326), *src.bounds, densify_pts=21)


def make_mosaicjson(paths: list[Path], out: Path, minzoom: int, maxzoom: int) -> Path:
    from cogeo_mosaic.mosaic import MosaicJSON

    mosaic = MosaicJSON.from_urls(
        [str(p) for p in paths], minzoom=minzoom, maxzoom=maxzoom, quiet=True
    )
    out.write_text(mosaic.model_dump_json(exclude_none=True))
    return out


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> Scenes:
    """Four overlapping 3-band uint16 scenes in EPSG:32631, 32632, 4326 and 3857."""
    d = tmp_path_factory.mktemp("scenes")
    paths = [
        make_scene(d / "a_32631.tif", "EPSG:32631", (5.75, 45.50), 400, 120.0, seed=1),
        make_scene(d / "b_32632.tif", "EPSG:32632", (6.15, 45.45), 400, 120.0, seed=2),
        make_scene(d / "c_4326.tif", "EPSG:4326", (5.95, 45.60), 300, 0.0015, seed=3),
        make_scene(
            d / "d_3857.tif",
            "EPSG:3857",
            (6.00, 45.40),
            300,
            150.0,
            seed=4,
            nodata=None,
            collar=False,
        ),
    ]
    mj = make_mosaicjson(paths, d / "mosaic.json", minzoom=7, maxzoom=10)
    return Scenes(d, tuple(paths), (5.55, 45.25, 6.45, 45.75), 9, mj)


def make_items(scene_paths: list[Path], out: Path, asset_keys: tuple[str, ...]) -> Path:
    """A STAC ItemCollection whose assets are single-band COGs split from each scene.

    Hrefs are relative to `out`'s directory.
    """
    from shapely.geometry import box, mapping

    features = []
    for n, p in enumerate(scene_paths):
        with rasterio.open(p) as src:
            data = src.read()
            crs, transform, nodata = src.crs, src.transform, src.nodata
        assets = {}
        for b, key in enumerate(asset_keys):
            band_path = p.with_name(f"{p.stem}_{key}.tif")
            if not band_path.exists():
                write_cog(band_path, data[b : b + 1], crs.to_string(), transform, nodata=nodata)
            assets[key] = {
                "href": os.path.relpath(band_path, out.parent),
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            }
        bbox = bounds_lonlat(p)
        features.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": p.stem,
                "geometry": mapping(box(*bbox)),
                "bbox": list(bbox),
                "properties": {"datetime": f"2024-06-{n + 1:02d}T10:00:00Z"},
                "assets": assets,
                "links": [],
            }
        )
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return out


@pytest.fixture(scope="session")
def titiler(tmp_path_factory):
    """A real TiTiler (titiler.application + uvicorn) on a free 127.0.0.1 port."""
    from servers import TiTiler

    server = TiTiler(log=tmp_path_factory.mktemp("titiler") / "titiler.log")
    yield server
    server.stop()

"""Grid maths against mercantile / supermercado, antimeridian, polygon AOIs, clipping."""

from __future__ import annotations

import math

import mercantile
import numpy
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from supermercado.burntiles import burn

from mosaic_assembler.errors import AOIError, ConfigError, PlanTooLargeError
from mosaic_assembler.grid import AOI, Clipper, plan_tiles


@settings(max_examples=60, deadline=None)
@given(
    west=st.floats(-179.0, 170.0),
    south=st.floats(-80.0, 75.0),
    dx=st.floats(0.001, 5.0),
    dy=st.floats(0.001, 5.0),
    zoom=st.integers(0, 14),
)
def test_bbox_tiles_and_transform_match_mercantile(west, south, dx, dy, zoom):
    east, north = min(west + dx, 180.0), min(south + dy, 85.0)
    plan = plan_tiles(AOI.from_bbox(west, south, east, north), zoom, 512, max_pixels=math.inf)
    expected = set(mercantile.tiles(west, south, east, north, zooms=zoom))
    got = {mercantile.Tile(x, y, z) for x, y, z in plan.tiles}
    # mercantile's own epsilon may include/exclude a tile whose edge the bbox only touches
    assert expected - got == set() or all(
        _touches(t, west, south, east, north) for t in expected - got
    )
    assert all(_touches(t, west, south, east, north) or t in expected for t in got)
    # georeferencing: every tile's window maps back to its mercantile bounds
    for tile in plan.tiles[:20]:
        row, col = plan.offset(tile)
        b = mercantile.xy_bounds(*tile)
        x0, y0 = plan.transform * (col, row)
        x1, y1 = plan.transform * (col + 512, row + 512)
        assert x0 == pytest.approx(b.left, abs=1e-6)
        assert y0 == pytest.approx(b.top, abs=1e-6)
        assert x1 == pytest.approx(b.right, abs=1e-6)
        assert y1 == pytest.approx(b.bottom, abs=1e-6)


def _touches(t, w, s, e, n):
    b = mercantile.bounds(t)
    return (
        math.isclose(b.east, w, abs_tol=1e-7)
        or math.isclose(b.west, e, abs_tol=1e-7)
        or math.isclose(b.north, s, abs_tol=1e-7)
        or math.isclose(b.south, n, abs_tol=1e-7)
    )


def test_tilesize_256_vs_512_resolution():
    aoi = AOI.from_bbox(2.0, 48.0, 2.5, 48.5)
    p512 = plan_tiles(aoi, 11, 512)
    p256 = plan_tiles(aoi, 11, 256)
    assert p512.tiles == p256.tiles
    assert p512.resolution == pytest.approx(p256.resolution / 2)
    # pixel size of zoom Z at 512 px = that of zoom Z+1 at 256 px
    assert p512.resolution == pytest.approx(plan_tiles(aoi, 12, 256).resolution)
    assert p512.width == p512.cols * 512


def test_antimeridian_bbox_is_one_continuous_raster():
    aoi = AOI.from_bbox(177.5, -17.0, -179.5, -16.0)  # Fiji-ish, W > E
    plan = plan_tiles(aoi, 8, 512)
    n = 2**8
    xs = {x for x, _, _ in plan.tiles}
    assert xs == {254, 255, 0}
    assert plan.x_start == 254 and plan.cols == 3
    assert plan.crosses_antimeridian
    left, _, right, _ = plan.bounds
    assert left == pytest.approx(mercantile.xy_bounds(254, 0, 8).left)
    assert right > 20037508.34  # runs east across 180°
    # the tile east of 180° (x=0) sits right after x=255
    row, col = plan.offset((0, plan.y_start, 8))
    assert col == 2 * 512
    assert plan.offset((255, plan.y_start, 8))[1] == 512
    assert n == 256


def test_polygon_aoi_matches_supermercado():
    poly = {
        "type": "Polygon",
        "coordinates": [[[5.6, 45.3], [6.4, 45.35], [6.0, 45.9], [5.7, 45.7], [5.6, 45.3]]],
    }
    aoi = AOI.from_geojson({"type": "Feature", "properties": {}, "geometry": poly})
    for zoom in (8, 10, 12):
        plan = plan_tiles(aoi, zoom, 256)
        expected = {
            tuple(int(v) for v in t) for t in burn([{"type": "Feature", "geometry": poly}], zoom)
        }
        assert set(plan.tiles) == expected
        bbox_plan = plan_tiles(AOI.from_bbox(*aoi.bbox), zoom, 256)
        if zoom == 12:
            assert len(plan.tiles) < len(bbox_plan.tiles)  # shape, not bbox extrema


def test_multipolygon_featurecollection():
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "MultiPolygon",
                    "coordinates": [
                        [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]],
                        [[[3, 0], [4, 0], [4, 1], [3, 1], [3, 0]]],
                    ],
                },
            },
        ],
    }
    plan = plan_tiles(AOI.from_geojson(fc), 8, 512)
    xs = {x for x, _, _ in plan.tiles}
    between = mercantile.tile(2.0, 0.5, 8).x
    assert between not in xs  # the gap between the parts is not planned
    assert plan.cols > len({x for x in xs if x < between})


@pytest.mark.parametrize(
    "bbox,msg",
    [
        ((10, 50, 11, 49), "inverted"),
        ((10, 50, 10, 51), "zero width"),
        ((-190, 0, 10, 1), "outside -180..180"),
        ((0, -95, 1, 1), "outside -90..90"),
        ((0, float("nan"), 1, 1), "finite"),
        ((0, 86, 1, 89), "WebMercatorQuad"),
    ],
)
def test_bad_bbox(bbox, msg):
    with pytest.raises(AOIError, match=msg):
        AOI.from_bbox(*bbox)


@pytest.mark.parametrize(
    "geojson,msg",
    [
        ({"type": "Point", "coordinates": [0, 0]}, "Polygon or MultiPolygon"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "Polygon or MultiPolygon"),
        ({"type": "FeatureCollection", "features": []}, "no Polygon"),
        ({"type": "Feature", "geometry": None}, "no geometry"),
        ('{"type": ', "not valid GeoJSON"),
        (
            {
                "type": "Polygon",
                "coordinates": [[[500000, 0], [500100, 0], [500100, 100], [500000, 0]]],
            },
            "lon/lat",
        ),
    ],
)
def test_bad_geojson(geojson, msg):
    with pytest.raises(AOIError, match=msg):
        AOI.from_geojson(geojson)


@pytest.mark.parametrize("zoom", [-1, 25, 1.5])
def test_bad_zoom(zoom):
    with pytest.raises(ConfigError, match="zoom"):
        plan_tiles(AOI.from_bbox(0, 0, 1, 1), zoom)


def test_max_pixels_suggests_lower_zoom():
    with pytest.raises(PlanTooLargeError, match="lower zoom"):
        plan_tiles(AOI.from_bbox(-5, 42, 9, 51), 14, 512, max_pixels=1e9)


def test_clipper_masks_outside_polygon():
    tri = {"type": "Polygon", "coordinates": [[[0, 0], [0.5, 0], [0, 0.5], [0, 0]]]}
    aoi = AOI.from_geojson(tri)
    tile = mercantile.tile(0.01, 0.01, 9)
    inside = Clipper.from_aoi(aoi).inside((tile.x, tile.y, tile.z), 256)
    assert inside.dtype == bool and inside.any() and not inside.all()
    # the pixel centres rasterio says are inside the projected triangle
    b = mercantile.xy_bounds(tile)
    res = (b.right - b.left) / 256
    x = b.left + (numpy.arange(256) + 0.5) * res
    y = b.top - (numpy.arange(256) + 0.5) * res
    xx, yy = numpy.meshgrid(x, y)
    lon = xx / 20037508.342789244 * 180
    lat = numpy.degrees(2 * numpy.arctan(numpy.exp(yy / 6378137.0)) - numpy.pi / 2)
    truth = (lon >= 0) & (lat >= 0) & (lon + lat <= 0.5)
    assert (inside == truth).mean() > 0.995
    assert rasterio  # imported for GDAL env side effects in other tests

"""Overviews built per chunk equal GDAL's overviews of the whole image; resumes rebuild them."""

from __future__ import annotations

import numpy
import pytest
import rasterio
import rasterio.shutil
from test_http import assert_same_cog

from mosaic_assembler import assemble
from mosaic_assembler.writer import OVERVIEW_TAG, ChunkOverviews, COGOptions

# zoom 12 over the scenes: 2560 x 1536 px, COG overviews 1280, 640, 320 px wide. Chunks of
# 2 x 2 tiles (512 px) get overviews at 2 and 4; the third level is computed from the
# chunks' coarsest level.
ZOOM, TILESIZE, CHUNK_TILES = 12, 256, 2


def _levels(path):
    """[(data, mask)] of the full resolution and every overview level."""
    with rasterio.open(path) as src:
        n = len(src.overviews(1))
    out = []
    for level in [None, *range(n)]:
        kw = {} if level is None else {"overview_level": level}
        with rasterio.open(path, **kw) as src:
            out.append((src.read(), src.dataset_mask()))
    return out


def assert_gdal_overviews(path, resampling, tmp_path):
    """`path`'s overviews (data and mask) are what GDAL's COG driver computes from its full
    resolution alone, bit for bit."""
    full, ref = tmp_path / f"{path.stem}.full.tif", tmp_path / f"{path.stem}.ref.tif"
    with rasterio.open(path) as src:
        block = src.profile["blockxsize"]
        assert src.overviews(1), "no overviews"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES"):
        rasterio.shutil.copy(path, full, driver="GTiff", TILED="YES", COPY_SRC_OVERVIEWS="NO")
        with rasterio.open(full) as f:
            assert f.overviews(1) == []
        rasterio.shutil.copy(
            full,
            ref,
            driver="COG",
            BLOCKSIZE=str(block),
            OVERVIEW_RESAMPLING=resampling.upper(),
            COMPRESS="DEFLATE",
        )
    ours, gdal = _levels(path), _levels(ref)
    assert len(ours) == len(gdal)
    for n, ((d1, m1), (d2, m2)) in enumerate(zip(ours, gdal, strict=True)):
        assert d1.shape == d2.shape, f"level {n}"
        numpy.testing.assert_array_equal(m1, m2, err_msg=f"mask of level {n}")
        numpy.testing.assert_array_equal(d1, d2, err_msg=f"data of level {n}")


def _chunk_tags(run_dir):
    tags = set()
    for p in sorted((run_dir / "chunks").glob("*.tif")):
        with rasterio.open(p) as src:
            tags.add(src.tags().get(OVERVIEW_TAG))
    return tags


@pytest.mark.parametrize("resampling", ["nearest", "average", "mode", "rms", "cubic"])
def test_overviews_equal_gdal_whole_image(scenes, tmp_path, resampling):
    out, run_dir = tmp_path / "o.tif", tmp_path / "run"
    r = assemble(
        out,
        bbox=scenes.bbox,
        zoom=ZOOM,
        tilesize=TILESIZE,
        mosaicjson=scenes.mosaicjson,
        chunk_tiles=CHUNK_TILES,
        overview_resampling=resampling,
        run_dir=run_dir,
        keep_run_dir=True,
        progress=False,
    )
    assert r.chunks > 4
    with rasterio.open(out) as src:
        assert len(src.overviews(1)) == 3
    # per-chunk overviews for the block-local resamplings; cubic: GDAL, from the whole image
    per_chunk = resampling != "cubic"
    assert _chunk_tags(run_dir) == ({f"{resampling}:2,4"} if per_chunk else {None})
    assert_gdal_overviews(out, resampling, tmp_path)


def test_split_outputs_overviews_equal_gdal(scenes, tmp_path):
    out = tmp_path / "split"
    r = assemble(
        out,
        bbox=scenes.bbox,
        zoom=ZOOM,
        tilesize=TILESIZE,
        mosaicjson=scenes.mosaicjson,
        chunk_tiles=CHUNK_TILES,
        split_zoom=9,
        overview_resampling="average",
        progress=False,
    )
    checked = 0
    for path in r.outputs:
        with rasterio.open(path) as src:
            if not src.overviews(1):
                continue
        assert_gdal_overviews(path, "average", tmp_path)
        checked += 1
    assert checked >= 2


def test_resume_from_chunks_without_overviews(scenes, tmp_path):
    """Chunk files written without overviews (as before per-chunk overviews, or for another
    resampling) are given them at finalize; the result equals a fresh run's."""
    common = dict(
        bbox=scenes.bbox,
        zoom=ZOOM,
        tilesize=TILESIZE,
        mosaicjson=scenes.mosaicjson,
        chunk_tiles=CHUNK_TILES,
        progress=False,
    )
    fresh = tmp_path / "fresh.tif"
    assemble(fresh, overview_resampling="average", **common)
    out, run_dir = tmp_path / "o.tif", tmp_path / "run"
    first = assemble(out, overview_resampling="cubic", run_dir=run_dir, keep_run_dir=True, **common)
    assert _chunk_tags(run_dir) == {None}  # chunk files as this version's predecessors wrote
    victim = sorted((run_dir / "chunks").glob("*.tif"))[0]
    victim.unlink()  # recomputed by a worker, with overviews
    again = assemble(
        out,
        overwrite=True,
        overview_resampling="average",
        run_dir=run_dir,
        keep_run_dir=True,
        **common,
    )
    assert again.chunks_resumed == first.chunks - 1
    assert _chunk_tags(run_dir) == {"average:2,4"}
    assert_same_cog(fresh, out)
    for (d1, m1), (d2, m2) in zip(_levels(fresh), _levels(out), strict=True):
        numpy.testing.assert_array_equal(m1, m2)
        numpy.testing.assert_array_equal(d1, d2)
    # and chunk files with overviews of another resampling are rebuilt too
    third = assemble(
        out,
        overwrite=True,
        overview_resampling="nearest",
        run_dir=run_dir,
        keep_run_dir=True,
        **common,
    )
    assert third.chunks_resumed == third.chunks
    assert _chunk_tags(run_dir) == {"nearest:2,4"}
    assert_gdal_overviews(out, "nearest", tmp_path)


def test_chunk_overviews_choice():
    assert COGOptions().chunk_overviews(256, 4096) == ChunkOverviews("nearest", (2, 4, 8, 16, 32))
    assert COGOptions().chunk_overviews(256, 2048) == ChunkOverviews("nearest", (2, 4, 8, 16))
    assert COGOptions().chunk_overviews(512, 512) == ChunkOverviews("nearest", (2, 4))
    assert COGOptions().chunk_overviews(256, 256) == ChunkOverviews("nearest", (2,))
    assert (
        COGOptions(overview_resampling="average").chunk_overviews(256, 512).resampling == "average"
    )
    # a --co OVERVIEW_RESAMPLING wins over --overview-resampling
    assert COGOptions(creation_options={"overview_resampling": "MODE"}).chunk_overviews(
        256, 512
    ) == ChunkOverviews("mode", (2, 4))
    # kernels that reach across chunk edges, or another pyramid: GDAL computes them all
    assert COGOptions(overview_resampling="bilinear").chunk_overviews(256, 4096) is None
    assert (
        COGOptions(creation_options={"OVERVIEW_RESAMPLING": "LANCZOS"}).chunk_overviews(256, 4096)
        is None
    )
    for co in (
        {"OVERVIEWS": "NONE"},
        {"OVERVIEW_COUNT": "2"},
        {"TILING_SCHEME": "GoogleMapsCompatible"},
    ):
        assert COGOptions(creation_options=co).chunk_overviews(256, 4096) is None


def test_chunk_writer_bounds_gdal_cache(tmp_path):
    # written blocks sit in GDAL's block cache until evicted: a chunk file being written
    # bounds it to WRITE_CACHE_BYTES (peak RSS flat in the number of tiles), then restores
    from rasterio.env import getenv

    from mosaic_assembler.grid import AOI, plan_tiles
    from mosaic_assembler.types import BandInfo, TileData
    from mosaic_assembler.writer._chunkfile import WRITE_CACHE_BYTES, TileWriter

    plan = plan_tiles(AOI.from_bbox(2.0, 48.0, 2.1, 48.05), 12, 256)
    tile = plan.tiles[0]
    data = TileData(numpy.ones((1, 256, 256), "uint8"), numpy.ones((256, 256), bool))
    with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):
        with TileWriter(tmp_path / "c.tif", plan, BandInfo(1, "uint8", ())) as writer:
            assert int(getenv()["GDAL_CACHEMAX"]) == WRITE_CACHE_BYTES
            writer.write(tile, data)
        assert int(getenv()["GDAL_CACHEMAX"]) == 64 * 2**20
    with rasterio.open(tmp_path / "c.tif") as ds:
        row, col = plan.offset(tile)
        assert (ds.read(1, window=((row, row + 256), (col, col + 256))) == 1).all()

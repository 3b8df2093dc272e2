"""`assemble-mosaic tiles` / `render_tiles`: pyramids against morecantile and rio-tiler."""

from __future__ import annotations

import json
from pathlib import Path

import morecantile
import numpy
import pytest
import rasterio
from click.testing import CliRunner
from conftest import write_cog
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import TileType
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rio_tiler.colormap import cmap
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader as TileReader
from s3_fixtures import FAKE_KEY_ID, FAKE_SECRET

from mosaic_assembler.cli import cli, main
from mosaic_assembler.errors import OutputError
from mosaic_assembler.render import render_tiles

RED = (200, 30, 30)
#: The fixture COG: EPSG:3857, 100 m pixels, 512 x 512, its west half solid RED, the rest a
#: gradient, its south-east quadrant nodata (0), so some tiles in the bounds are empty.
ORIGIN = (600_000.0, 5_700_000.0)
RES = 100.0
SIZE = 512
ZOOMS = (6, 11)


def _rgb() -> numpy.ndarray:
    data = numpy.zeros((3, SIZE, SIZE), "uint8")
    rows, cols = numpy.mgrid[0:SIZE, 0:SIZE]
    data[0] = 40 + (cols % 200)
    data[1] = 60 + (rows % 180)
    data[2] = 90
    for b, v in enumerate(RED):
        data[b, :, : SIZE // 2] = v
    data[:, SIZE // 2 :, SIZE // 2 :] = 0
    return data


@pytest.fixture(scope="module")
def rgb_cog(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiles") / "rgb.tif"
    return write_cog(path, _rgb(), "EPSG:3857", from_origin(*ORIGIN, RES, RES), nodata=0)


def red_lonlat() -> tuple[float, float]:
    """A point in the middle of the solid red half."""
    x = ORIGIN[0] + RES * SIZE / 4
    y = ORIGIN[1] - RES * SIZE / 2
    return morecantile.tms.get("WebMercatorQuad").lnglat(x, y)


def gradient_lonlat() -> tuple[float, float]:
    x = ORIGIN[0] + RES * SIZE * 0.75
    y = ORIGIN[1] - RES * SIZE * 0.25
    return morecantile.tms.get("WebMercatorQuad").lnglat(x, y)


@pytest.fixture(scope="module")
def folder(rgb_cog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pyr") / "pyr"
    render_tiles(rgb_cog, out, zooms=ZOOMS, parallel="threads")
    return out


def _files(root: Path, ext: str = "png") -> dict[tuple[int, int, int], Path]:
    found = {}
    for p in root.glob(f"[0-9]*/[0-9]*/[0-9]*.{ext}"):
        z, x, y = int(p.parts[-3]), int(p.parts[-2]), int(p.stem)
        found[(x, y, z)] = p
    return found


def _decode(data: bytes) -> numpy.ndarray:
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read()


def expected_tiles(cog: Path, zooms: tuple[int, int], tms_id: str = "WebMercatorQuad") -> set:
    """Brute force: every tile whose bounds meet the COG's, minus those rio-tiler finds empty.

    Every tile of the matrix is tested, except far away: a window of the corner tiles
    widened by 2 on each side (the full matrix has 4 M tiles at zoom 11).
    """
    tms = morecantile.tms.get(tms_id)
    out = set()
    with TileReader(str(cog), tms=tms) as r:
        w, s, e, n = r.get_geographic_bounds(tms.rasterio_geographic_crs)
        for z in range(zooms[0], zooms[1] + 1):
            m = tms.matrix(z)
            ul, lr = tms.tile(w, n, z), tms.tile(e, s, z)
            xs = range(max(0, ul.x - 2), min(m.matrixWidth, lr.x + 3))
            ys = range(max(0, ul.y - 2), min(m.matrixHeight, lr.y + 3))
            for x in xs:
                for y in ys:
                    tw, ts, te, tn = tms.bounds(morecantile.Tile(x, y, z))
                    if not (tw < e and te > w and ts < n and tn > s):
                        continue
                    try:
                        img = r.tile(x, y, z)
                    except TileOutsideBounds:
                        continue
                    if img.mask.any():
                        out.add((x, y, z))
    return out


def test_pyramid_holds_the_tiles_of_the_tms_that_touch_the_data(rgb_cog, folder):
    found = set(_files(folder))
    expected = expected_tiles(rgb_cog, ZOOMS)
    assert found == expected
    assert {z for _, _, z in found} == set(range(ZOOMS[0], ZOOMS[1] + 1))
    meta = json.loads((folder / "tiles.json").read_text())
    assert (meta["minzoom"], meta["maxzoom"], meta["format"]) == (*ZOOMS, "png")


def test_pyramid_of_another_tms(rgb_cog, tmp_path):
    out = tmp_path / "crs84"
    r = render_tiles(rgb_cog, out, zooms=(5, 9), tms="WorldCRS84Quad")
    assert set(_files(out)) == expected_tiles(rgb_cog, (5, 9), "WorldCRS84Quad")
    assert r.previewer == out / "index.html"
    assert '"crs": "EPSG4326"' in r.previewer.read_text()


def test_a_tile_equals_rio_tilers_render(rgb_cog, folder):
    files = _files(folder)
    for tile in sorted(files)[:: max(1, len(files) // 6)]:
        with TileReader(str(rgb_cog)) as r:
            ref = r.tile(*tile, tilesize=256).render(img_format="PNG")
        numpy.testing.assert_array_equal(_decode(files[tile].read_bytes()), _decode(ref))


def test_pillow_png_has_rio_tilers_pixels():
    """encode_png against `ImageData.render`: 1 and 3 bands, a colour map, partial masks,
    and the dtypes/band counts it leaves to rio-tiler."""
    from rio_tiler.models import ImageData

    from mosaic_assembler.render._spec import encode_png

    rng = numpy.random.default_rng(7)
    viridis = cmap.get("viridis")
    for bands, dtype, colormap in (
        (3, "uint8", None),
        (1, "uint8", None),
        (1, "uint8", viridis),
        (2, "uint8", None),
        (3, "uint16", None),
    ):
        hi = 255 if dtype == "uint8" else 3000
        data = rng.integers(0, hi, (bands, 64, 64)).astype(dtype)
        hole = numpy.zeros((64, 64), bool)
        hole[10:30, 5:60] = True
        img = ImageData(numpy.ma.MaskedArray(data, mask=numpy.broadcast_to(hole, data.shape)))
        ours = _decode(encode_png(img, colormap))
        ref = _decode(img.render(img_format="PNG", colormap=colormap))
        assert ours.shape == ref.shape and (ours[-1] == 0).sum() == hole.sum()
        numpy.testing.assert_array_equal(ours, ref)


def test_rescale_bidx_colormap_and_formats(rgb_cog, tmp_path):
    out = tmp_path / "grey"
    render_tiles(rgb_cog, out, zooms=(11, 11), bidx=[2], rescale=(60, 240), colormap="viridis")
    files = _files(out)
    tile = sorted(files)[0]
    with TileReader(str(rgb_cog)) as r:
        img = r.tile(*tile, tilesize=256, indexes=(2,))
    img.rescale(in_range=((60, 240),))
    ref = img.render(img_format="PNG", colormap=cmap.get("viridis"))
    numpy.testing.assert_array_equal(_decode(files[tile].read_bytes()), _decode(ref))
    for fmt, ext, magic in (("webp", "webp", b"RIFF"), ("jpeg", "jpg", b"\xff\xd8")):
        o = tmp_path / fmt
        render_tiles(rgb_cog, o, zooms=(10, 10), img_format=fmt, tilesize=512)
        tiles = _files(o, ext)
        assert tiles and all(p.read_bytes().startswith(magic) for p in tiles.values())
        with rasterio.open(next(iter(tiles.values()))) as ds:
            assert ds.width == 512


def test_pmtiles_archive_holds_the_same_tiles_as_the_folder(rgb_cog, folder, tmp_path):
    archive = tmp_path / "pyr.pmtiles"
    r = render_tiles(rgb_cog, archive, zooms=ZOOMS)
    assert r.previewer == tmp_path / "pyr.html"
    assert (tmp_path / "pyr.preview" / "pmtiles" / "pmtiles.js").is_file()
    assert not (tmp_path / "pyr.pmtiles.parts").exists()
    with archive.open("rb") as f:
        source = MmapSource(f)
        header = Reader(source).header()
        tiles = {(x, y, z): bytes(data) for (z, x, y), data in all_tiles(source)}
    files = _files(folder)
    assert set(tiles) == set(files)
    for tile, data in tiles.items():
        assert data == files[tile].read_bytes()
    assert header["tile_type"] == TileType.PNG
    assert (header["min_zoom"], header["max_zoom"]) == ZOOMS
    lon, lat = red_lonlat()
    assert header["min_lon_e7"] / 1e7 < lon < header["max_lon_e7"] / 1e7
    assert header["min_lat_e7"] / 1e7 < lat < header["max_lat_e7"] / 1e7
    assert ZOOMS[0] <= header["center_zoom"] <= ZOOMS[1]


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_rerun_writes_nothing(rgb_cog, tmp_path):
    runner = CliRunner()
    out = tmp_path / "pyr"
    archive = tmp_path / "pyr.pmtiles"
    for target in (out, archive):
        args = ["tiles", str(rgb_cog), str(target), "--zooms", "6-11", "--json"]
        first = runner.invoke(cli, args)
        assert first.exit_code == 0, first.output
        before = _stamps(tmp_path)
        again = runner.invoke(cli, args)
        assert again.exit_code == 0, again.output
        doc = json.loads(again.output)
        assert doc["tiles_written"] == 0
        assert doc["tiles_skipped"] == json.loads(first.output)["tiles_written"] > 0
        assert _stamps(tmp_path) == before


def test_an_interrupted_run_resumes_where_it_stopped(rgb_cog, folder, tmp_path):
    archive = tmp_path / "pyr.pmtiles"
    total = len(_files(folder))

    class Stop(Exception):
        pass

    def stop_after_ten(p):
        if p.done >= 10:
            raise Stop

    with pytest.raises(Stop):
        render_tiles(rgb_cog, archive, zooms=ZOOMS, progress=stop_after_ten, concurrency=1)
    assert not archive.exists()
    assert len(_files(tmp_path / "pyr.pmtiles.parts")) == 10
    r = render_tiles(rgb_cog, archive, zooms=ZOOMS)
    assert (r.tiles_skipped, r.tiles_written) == (10, total - 10)
    with archive.open("rb") as f:
        assert len(list(all_tiles(MmapSource(f)))) == total
    # more zooms: only the new ones are rendered, the archive is rewritten with all
    r = render_tiles(rgb_cog, archive, zooms=(ZOOMS[0], ZOOMS[1] + 1))
    assert r.tiles_skipped == total and r.tiles_written > 0
    with archive.open("rb") as f:
        assert len(list(all_tiles(MmapSource(f)))) == total + r.tiles_written
    # a folder: deleted tiles come back, the others are left alone
    out = tmp_path / "copy"
    render_tiles(rgb_cog, out, zooms=ZOOMS)
    gone = sorted(_files(out).values())[:3]
    for p in gone:
        p.unlink()
    r = render_tiles(rgb_cog, out, zooms=ZOOMS)
    assert (r.tiles_written, r.tiles_skipped) == (3, total - 3)


def test_other_options_refuse_an_existing_pyramid(rgb_cog, folder, tmp_path):
    out = tmp_path / "pyr"
    render_tiles(rgb_cog, out, zooms=(8, 9))
    with pytest.raises(OutputError, match="--overwrite"):
        render_tiles(rgb_cog, out, zooms=(8, 9), rescale=(0, 100))
    r = render_tiles(rgb_cog, out, zooms=(8, 9), rescale=(0, 100), overwrite=True)
    assert r.tiles_skipped == 0 and r.tiles_written > 0


def test_a_split_outputs_mosaicjson(rgb_cog, folder, tmp_path):
    """Two COGs (the west and east halves) and a mosaic.json listing them: same tiles."""
    with rasterio.open(rgb_cog) as ds:
        data = ds.read()
    half = SIZE // 2
    west = write_cog(
        tmp_path / "0.tif", data[:, :, :half], "EPSG:3857", from_origin(*ORIGIN, RES, RES)
    )
    east = write_cog(
        tmp_path / "1.tif",
        numpy.ascontiguousarray(data[:, :, half:]),
        "EPSG:3857",
        from_origin(ORIGIN[0] + half * RES, ORIGIN[1], RES, RES),
    )
    qk = morecantile.tms.get("WebMercatorQuad").tile(*red_lonlat(), 6)
    doc = {
        "mosaicjson": "0.0.3",
        "minzoom": 6,
        "maxzoom": 11,
        "quadkey_zoom": 6,
        "bounds": [-180, -85, 180, 85],
        "tiles": {morecantile.tms.get("WebMercatorQuad").quadkey(qk): [str(west), str(east)]},
    }
    mosaic = tmp_path / "mosaic.json"
    mosaic.write_text(json.dumps(doc))
    out = tmp_path / "pyr"
    render_tiles(mosaic, out, zooms=(10, 11))
    files = _files(out)
    ref = {t: p for t, p in _files(folder).items() if t[2] >= 10}
    assert set(files) == set(ref)
    for tile in ref:
        if tile[2] == 11:
            a, b = _decode(files[tile].read_bytes()), _decode(ref[tile].read_bytes())
            numpy.testing.assert_array_equal(a, b)


def test_dask_renders_the_same_tiles(rgb_cog, folder, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "pyr"
    r = render_tiles(rgb_cog, out, zooms=ZOOMS, dask_local=1)
    files, ref = _files(out), _files(folder)
    assert set(files) == set(ref) and r.tiles_written == len(ref)
    assert all(files[t].read_bytes() == ref[t].read_bytes() for t in ref)


@pytest.mark.parametrize("start", ["default", "forkserver", "spawn"])
def test_processes_render_the_same_bytes_as_threads(rgb_cog, folder, tmp_path, monkeypatch, start):
    import multiprocessing

    from mosaic_assembler.render import _run

    if start != "default":
        if start not in multiprocessing.get_all_start_methods():
            pytest.skip(f"no {start} here")
        monkeypatch.setattr(_run, "_mp_context", lambda: multiprocessing.get_context(start))
    out = tmp_path / "pyr"
    calls = []
    r = render_tiles(
        rgb_cog, out, zooms=ZOOMS, parallel="processes", concurrency=2, progress=calls.append
    )
    files, ref = _files(out), _files(folder)
    assert set(files) == set(ref) and r.tiles_written == len(ref)
    assert all(files[t].read_bytes() == ref[t].read_bytes() for t in ref)
    assert calls[-1].done + calls[-1].empty == r.tiles_total == len(ref) + r.tiles_empty


def test_processes_fill_a_pmtiles_archive_and_report_empty_tiles(rgb_cog, folder, tmp_path):
    from mosaic_assembler.render import TileRenderer, _run, plan_pyramid

    archive = tmp_path / "a.pmtiles"
    spec = _spec_of(rgb_cog)
    tiles = [(0, 0, 10), *list(plan_pyramid(spec))[:5]]  # the first one is far from the data
    parts = dict(_run._render_processes(spec, tiles, 2, batch=2))
    with TileRenderer(spec) as renderer:
        assert parts == {t: renderer.render(t) for t in tiles} and parts[(0, 0, 10)] is None
    r = render_tiles(rgb_cog, archive, zooms=ZOOMS, parallel="processes", concurrency=2)
    with archive.open("rb") as f:
        tiles = {(x, y, z): bytes(d) for (z, x, y), d in all_tiles(MmapSource(f))}
    ref = _files(folder)
    assert r.tiles_written == len(ref) and set(tiles) == set(ref)
    assert all(tiles[t] == ref[t].read_bytes() for t in ref)


def _spec_of(cog: Path):
    from mosaic_assembler.render import TilesOptions, open_spec

    return open_spec(cog, TilesOptions(zooms=ZOOMS))


def test_parallel_must_be_known(rgb_cog, tmp_path):
    from mosaic_assembler.errors import ConfigError

    with pytest.raises(ConfigError, match="parallel"):
        render_tiles(rgb_cog, tmp_path / "p", zooms=ZOOMS, parallel="gpus")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zooms", "12-5"], "--zooms"),
        (["--zooms", "5-30"], "--zooms must be MIN-MAX"),
        (["--zooms", "5-6", "--format", "gif"], "--format"),
        (["--zooms", "5-6", "--colormap", "nope"], "colour map"),
        (["--zooms", "5-6", "--colormap", "viridis"], "--colormap needs one band"),
        (["--zooms", "5-6", "--tms", "Nope"], "TileMatrixSet"),
        (["--zooms", "5-6", "--bidx", "4"], "--bidx 4"),
        (["--zooms", "5-6", "--rescale", "9,1"], "MIN must be below MAX"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(rgb_cog, tmp_path, capsys, args, message):
    code, err = _main(["tiles", str(rgb_cog), str(tmp_path / "out"), *args], capsys)
    assert code == 2, err
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "out").exists()


def test_bad_paths_are_one_error_line_and_exit_2(rgb_cog, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        ([str(tmp_path / "missing.tif"), str(tmp_path / "o")], "does not exist"),
        ([str(rgb_cog), str(afile)], "not a directory"),
        ([str(rgb_cog), "gs://bucket/pyr"], "only s3:// is supported"),
        ([str(rgb_cog), str(tmp_path / "x.pmtiles"), "--tms", "WorldCRS84Quad"], "PMTiles"),
        ([str(rgb_cog), str(tmp_path)], "holds no pyramid"),
    ]
    for paths, message in cases:
        code, err = _main(["tiles", *paths, "--zooms", "6-7"], capsys)
        assert code == 2, (paths, err)
        assert err.startswith("Error: ") and message in err, err


def _main(argv: list[str], capsys) -> tuple[int, str]:
    """The real entry point (one-line errors, exit codes), in this process."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


# --- S3: a prefix of tile objects, a .pmtiles object, s3:// sources (a real moto server) ---


def _puts(s3, since: int) -> list[str]:
    return [p for m, p, _ in s3.server.requests(since) if m in ("PUT", "POST")]


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert FAKE_KEY_ID not in text and FAKE_SECRET not in text


def test_s3_prefix_holds_the_folders_tiles_and_a_rerun_puts_nothing(rgb_cog, folder, s3):
    """s3:// SRC (read through /vsis3/) and OUT: the folder run's tiles, byte for byte."""
    src = s3.upload(rgb_cog, "in/rgb.tif")
    args = ["tiles", src, s3.url("pyr"), "--zooms", "6-11", "--json", "-vv"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    ref = _files(folder)
    keys = set(s3.keys("pyr/"))
    tiles = {k for k in keys if k.endswith(".png") and "/preview/" not in k}
    assert tiles == {f"pyr/{z}/{x}/{y}.png" for x, y, z in ref}
    for x, y, z in ref:
        assert s3.get(f"pyr/{z}/{x}/{y}.png") == ref[(x, y, z)].read_bytes()
    assert s3.get("pyr/index.html") == (folder / "index.html").read_bytes()
    # served with their types: a browser shows the previewer instead of downloading it
    kinds = {k: s3.client.head_object(Bucket=s3.name, Key=k)["ContentType"]
             for k in ("pyr/index.html", "pyr/preview/leaflet/leaflet.js", "pyr/tiles.json",
                       min(tiles))}  # fmt: skip
    assert kinds["pyr/index.html"] == "text/html" and kinds[min(tiles)] == "image/png"
    assert kinds["pyr/tiles.json"] == "application/json"
    assert kinds["pyr/preview/leaflet/leaflet.js"] in ("text/javascript", "application/javascript")
    leaflet = folder / "preview" / "leaflet" / "leaflet.js"
    assert s3.get("pyr/preview/leaflet/leaflet.js") == leaflet.read_bytes()
    meta, local = (
        json.loads(s3.get("pyr/tiles.json")),
        json.loads((folder / "tiles.json").read_text()),
    )
    assert meta.pop("fingerprint") != local.pop("fingerprint")  # the source: an S3 object's ETag
    assert meta == local
    since = s3.server.log_offset()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    doc = json.loads(again.output.splitlines()[-1])
    assert (doc["tiles_written"], doc["tiles_skipped"]) == (0, len(ref))
    assert _puts(s3, since) == []
    _no_secret(first.output, again.output, s3.get("pyr/tiles.json").decode())
    _no_secret(s3.get("pyr/index.html").decode())
    # a deleted tile comes back, alone
    gone = f"pyr/{sorted(ref)[0][2]}/{sorted(ref)[0][0]}/{sorted(ref)[0][1]}.png"
    s3.client.delete_object(Bucket=s3.name, Key=gone)
    since = s3.server.log_offset()
    r = render_tiles(src, s3.url("pyr"), zooms=ZOOMS)
    assert (r.tiles_written, r.tiles_skipped) == (1, len(ref) - 1)
    assert [p.split("?")[0] for p in _puts(s3, since)] == [f"/{s3.name}/{gone}"]
    assert r.path == s3.url("pyr") and r.previewer == s3.url("pyr/index.html")


def test_s3_pmtiles_is_one_create_only_put_and_a_rerun_puts_nothing(rgb_cog, folder, s3, tmp_path):
    url = s3.url("p/a.pmtiles")
    since = s3.server.log_offset()
    r = render_tiles(rgb_cog, url, zooms=ZOOMS, parallel="processes", concurrency=2)
    assert [p.split("?")[0] for p in _puts(s3, since)].count(f"/{s3.name}/p/a.pmtiles") == 1
    archive = s3.download("p/a.pmtiles", tmp_path / "a.pmtiles")
    with archive.open("rb") as f:
        tiles = {(x, y, z): bytes(d) for (z, x, y), d in all_tiles(MmapSource(f))}
    ref = _files(folder)
    assert set(tiles) == set(ref) and all(tiles[t] == ref[t].read_bytes() for t in ref)
    assert r.previewer == s3.url("p/a.html")
    static = Path(__file__).parents[1] / "mosaic_assembler" / "static" / "pmtiles" / "pmtiles.js"
    assert s3.get("p/a.preview/pmtiles/pmtiles.js") == static.read_bytes()
    assert "a.preview/pmtiles/pmtiles.js" in s3.get("p/a.html").decode()
    since = s3.server.log_offset()
    r = render_tiles(rgb_cog, url, zooms=ZOOMS)
    assert (r.tiles_written, r.tiles_skipped) == (0, len(ref))
    assert _puts(s3, since) == []
    with pytest.raises(OutputError, match="--overwrite"):
        render_tiles(rgb_cog, url, zooms=ZOOMS, rescale=(0, 100))
    r = render_tiles(rgb_cog, url, zooms=(8, 8), rescale=(0, 100), overwrite=True)
    with s3.download("p/a.pmtiles", tmp_path / "b.pmtiles").open("rb") as f:
        assert {z for (z, _, _), _ in all_tiles(MmapSource(f))} == {8}
    # more zooms over an archive of the same options: only the new tiles, one replacing put
    # (and the page, whose zoom range changed)
    since = s3.server.log_offset()
    r = render_tiles(rgb_cog, url, zooms=(8, 9), rescale=(0, 100))
    assert r.tiles_skipped > 0 and r.tiles_written > 0
    puts = [p.split("?")[0] for p in _puts(s3, since)]
    assert puts == [f"/{s3.name}/p/a.pmtiles", f"/{s3.name}/p/a.html"]
    assert not _scratch(url).exists()


def _scratch(url: str) -> Path:
    """Where an s3:// archive is built (S3PMTilesSink.work)."""
    import hashlib
    import tempfile

    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mosaic-assembler-pmtiles-{digest}"


def test_a_file_that_is_no_archive_is_refused_and_left_alone(rgb_cog, tmp_path):
    other = tmp_path / "x.pmtiles"
    other.write_bytes(b"not an archive")
    with pytest.raises(OutputError, match="no PMTiles archive"):
        render_tiles(rgb_cog, other, zooms=ZOOMS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pmtiles"]


def test_s3_outputs_that_are_not_ours_are_refused_and_left(rgb_cog, s3, capsys):
    s3.client.put_object(Bucket=s3.name, Key="mine/notes.txt", Body=b"keep")
    s3.client.put_object(Bucket=s3.name, Key="x.pmtiles", Body=b"not an archive")
    for out, message in (
        (s3.url("mine"), "no pyramid of this tool"),
        (s3.url("x.pmtiles"), "no PMTiles archive"),
        ("s3://no-such-bucket-here/pyr", "bucket does not exist"),
    ):
        code, err = _main(["tiles", str(rgb_cog), out, "--zooms", "6-7"], capsys)
        assert code == 2 and err.startswith("Error: ") and err.count("\n") == 1, err
        assert message in err, err
        _no_secret(err)
    assert sorted(s3.keys()) == ["mine/notes.txt", "x.pmtiles"]
    assert s3.get("x.pmtiles") == b"not an archive"
    assert not _scratch(s3.url("x.pmtiles")).exists()  # the downloaded copy is gone
    code, err = _main(["tiles", s3.url("in/missing.tif"), s3.url("p"), "--zooms", "6-7"], capsys)
    assert code == 2 and "does not exist" in err, err


def test_an_s3_split_outputs_mosaicjson(rgb_cog, folder, s3, tmp_path):
    """mosaic.json and its two COGs on S3 (relative hrefs): the folder run's tiles."""
    with rasterio.open(rgb_cog) as ds:
        data = ds.read()
    half = SIZE // 2
    west = write_cog(
        tmp_path / "0.tif", data[:, :, :half], "EPSG:3857", from_origin(*ORIGIN, RES, RES)
    )
    east = write_cog(
        tmp_path / "1.tif",
        numpy.ascontiguousarray(data[:, :, half:]),
        "EPSG:3857",
        from_origin(ORIGIN[0] + half * RES, ORIGIN[1], RES, RES),
    )
    s3.upload(west, "split/0.tif")
    s3.upload(east, "split/1.tif")
    wmq = morecantile.tms.get("WebMercatorQuad")
    qk = wmq.quadkey(wmq.tile(*red_lonlat(), 6))
    doc = {"mosaicjson": "0.0.3", "minzoom": 6, "maxzoom": 11, "quadkey_zoom": 6,
           "bounds": [-180, -85, 180, 85], "tiles": {qk: ["0.tif", "1.tif"]}}  # fmt: skip
    s3.client.put_object(Bucket=s3.name, Key="split/mosaic.json", Body=json.dumps(doc).encode())
    out = tmp_path / "pyr"
    render_tiles(s3.url("split/mosaic.json"), out, zooms=(11, 11))
    files = _files(out)
    ref = {t: p for t, p in _files(folder).items() if t[2] == 11}
    assert set(files) == set(ref)
    for tile in ref:
        a, b = _decode(files[tile].read_bytes()), _decode(ref[tile].read_bytes())
        numpy.testing.assert_array_equal(a, b)


def test_a_local_pyramid_starts_without_the_pipeline_or_boto3(rgb_cog, folder, tmp_path):
    """`tiles` of a local COG imports neither `assemble`'s modules (the CLI loads a command's
    module when it runs) nor boto3 (refused while rasterio and rio-tiler import); the tiles
    are the usual ones, and boto3 still imports afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mosaic_assembler.cli import main\n"
        "try:\n"
        "    main(['tiles', sys.argv[1], sys.argv[2], '--zooms', '6-11', '-q'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "loaded = [m for m in ('boto3', 'botocore', 'mosaic_assembler.pipeline',\n"
        "          'mosaic_assembler.writer', 'pystac_client', 'requests') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import rasterio.session\n"
        "assert rasterio.session.boto3 is None\n"
        "import boto3\n"
        "assert boto3.Session\n"
        "print('ok')\n"
    )
    out = tmp_path / "lean"
    r = subprocess.run(
        [sys.executable, "-c", code, str(rgb_cog), str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    tiles = {p.relative_to(folder) for p in folder.rglob("*.png")}
    assert tiles and {p.relative_to(out) for p in out.rglob("*.png")} == tiles
    for rel in tiles:
        assert (out / rel).read_bytes() == (folder / rel).read_bytes(), rel


@pytest.mark.parametrize(
    ("src", "out", "options", "may"),
    [
        ("a.tif", "pyr", {}, False),
        ("a.TIFF", "a.pmtiles", {}, False),
        ("https://h.example/a.tif", "pyr", {}, False),
        ("s3://b/a.tif", "pyr", {}, True),
        ("a.tif", "s3://b/pyr", {}, True),
        ("https://b.s3.amazonaws.com/a.tif", "pyr", {}, True),
        ("out/mosaic.json", "pyr", {}, True),  # its members may be on S3
        ("a.tif", "pyr", {"dask_local": 2}, True),
        ("a.tif", "pyr", {"dask_scheduler": "tcp://127.0.0.1:8786"}, True),
    ],
)
def test_boto3_is_refused_only_where_no_s3_path_can_occur(src, out, options, may):
    from mosaic_assembler.cli.tiles import _may_touch_s3

    assert _may_touch_s3(src, out, options) is may

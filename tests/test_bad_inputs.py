"""Bad inputs through the real CLI: exit 2, one `Error:` line, nothing written (issue 11).

Each case runs `assemble-mosaic` in a subprocess with its own working directory (holding a
copy of the inputs: a small COG, a mosaicJSON and a STAC items file over it), HOME and
TMPDIR. The working directory is snapshotted before and after: a refused input leaves no
output, no run directory, no temporary file and changes none of the inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mercantile
import numpy
import pytest
import rasterio
import rasterio.shutil  # noqa: F401  (conftest.write_cog uses it)
from conftest import make_mosaicjson, write_cog
from rasterio.transform import from_origin

CENTER = (6.0, 45.5)
RES = 0.002
SIZE = 128
BOUNDS = (
    CENTER[0] - SIZE * RES / 2,
    CENTER[1] - SIZE * RES / 2,
    CENTER[0] + SIZE * RES / 2,
    CENTER[1] + SIZE * RES / 2,
)
ZOOM = 8
BBOX = ["--bbox", *(f"{v:.4f}" for v in BOUNDS), "--zoom", str(ZOOM)]
MJ = ["--mosaicjson", "in/mosaic.json"]
ITEMS = ["--items", "in/items.json", "--assets", "visual"]
TILER = ["--tiler", "http://127.0.0.1:9/tiles/{z}/{x}/{y}.tif", "--retries", "0"]
OUT = "out.tif"
NO_DASK = "import sys; sys.modules['distributed'] = None; "


def _item(href: str, qa: str) -> dict:
    from shapely.geometry import box, mapping

    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "scene",
        "geometry": mapping(box(*BOUNDS)),
        "bbox": list(BOUNDS),
        "properties": {"datetime": "2024-06-01T10:00:00Z"},
        "assets": {"visual": {"href": href}, "qa": {"href": qa}},
        "links": [],
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """in/: scene.tif (3-band uint16 COG), qa.tif, nocrs.tif and the documents over them."""
    d = tmp_path_factory.mktemp("bad-inputs") / "in"
    d.mkdir()
    rng = numpy.random.default_rng(0)
    data = rng.integers(1, 30000, (3, SIZE, SIZE), dtype="uint16")
    transform = from_origin(BOUNDS[0], BOUNDS[3], RES, RES)
    write_cog(d / "scene.tif", data, "EPSG:4326", transform)
    write_cog(d / "qa.tif", data[:1], "EPSG:4326", transform)
    with rasterio.open(
        d / "nocrs.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint16"
    ) as dst:
        dst.write(data)
    make_mosaicjson([d / "scene.tif"], d / "mosaic.json", minzoom=ZOOM - 1, maxzoom=ZOOM + 1)
    doc = json.loads((d / "mosaic.json").read_text())
    doc["tiles"] = {q: ["nocrs.tif"] for q in doc["tiles"]}
    (d / "nocrs.json").write_text(json.dumps(doc))
    items = {"type": "FeatureCollection", "features": [_item("scene.tif", "qa.tif")]}
    (d / "items.json").write_text(json.dumps(items))
    (d / "not_mosaic.json").write_text(json.dumps({"type": "Thing", "tiles": 3}))
    (d / "bad.json").write_text('{"type": "FeatureCollection", "features": [')
    (d / "point.geojson").write_text('{"type": "Point", "coordinates": [6, 45.5]}')
    line = [[[5.9, 45.4], [6.0, 45.5], [6.1, 45.6], [5.9, 45.4]]]
    (d / "flat.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": line}))
    (d / "adir").mkdir()
    (d / "adir" / "keep.txt").write_text("keep")
    (d / "exists.tif").write_text("precious")
    return d


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def run_cli(cwd: Path, args: list[str], stdin: bytes | None = None, prelude: str = ""):
    """The real entry point in a subprocess, with cwd, HOME and TMPDIR inside `cwd`."""
    env = {
        **os.environ,
        "HOME": str(cwd / "home"),
        "TMPDIR": str(cwd / "tmp"),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return subprocess.run(
        [sys.executable, "-c", prelude + "from mosaic_assembler.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def workdir(inputs, tmp_path) -> Path:
    shutil.copytree(inputs, tmp_path / "in")
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    return tmp_path


def _xfail(reason: str):
    return pytest.mark.xfail(strict=True, reason=f"fix in {reason}")


def case(id_: str, args: list[str], message: str = "", stdin: bytes | None = None, **kw):
    """One row: the arguments (OUT appended unless `out=False`), a substring of the message."""
    marks = [_xfail(kw["fix"])] if "fix" in kw else []
    args = [*args, OUT] if kw.get("out", True) else args
    return pytest.param(args, message, stdin, kw.get("prelude", ""), id=id_, marks=marks)


CASES = [
    # area
    case("bbox-lon-range", ["--bbox", "-190", "45", "6", "46", "--zoom", "8", *MJ], "-180..180"),
    case("bbox-lat-range", ["--bbox", "5", "-95", "6", "46", "--zoom", "8", *MJ], "-90..90"),
    case("bbox-inverted-lat", ["--bbox", "5", "46", "6", "45", "--zoom", "8", *MJ], "inverted"),
    case("bbox-nan", ["--bbox", "nan", "45", "6", "46", "--zoom", "8", *MJ], "finite"),
    case("bbox-zero-width", ["--bbox", "5", "45", "5", "46", "--zoom", "8", *MJ], "zero width"),
    case("bbox-and-aoi", [*BBOX, "--aoi", "in/flat.geojson", *MJ], "not both"),
    case("aoi-malformed", ["--aoi", "in/bad.json", "--zoom", "8", *MJ], "GeoJSON"),
    case("aoi-point", ["--aoi", "in/point.geojson", "--zoom", "8", *MJ], "Polygon"),
    case(
        "aoi-zero-area",
        ["--aoi", "in/flat.geojson", "--zoom", "8", *MJ],
        "zero area",
    ),
    case("aoi-missing", ["--aoi", "in/nope.geojson", "--zoom", "8", *MJ], "nope.geojson"),
    case(
        "aoi-directory",
        ["--aoi", "in/adir", "--zoom", "8", *MJ],
        "directory",
    ),
    case("aoi-stdin-empty", ["--aoi", "-", "--zoom", "8", *MJ], "empty", stdin=b""),
    case(
        "aoi-stdin-binary",
        ["--aoi", "-", "--zoom", "8", *MJ],
        "stdin",
        stdin=bytes(range(128, 256)) * 4,
    ),
    case(
        "aoi-stdin-nul",
        ["--aoi", "-", "--zoom", "8", *MJ],
        "stdin",
        stdin=b"\0" * 64,
    ),
    case(
        "aoi-stdin-not-json",
        ["--aoi", "-", "--zoom", "8", *MJ],
        "GeoJSON",
        stdin=b"hello world",
    ),
    # grid
    case("zoom-25", [*BBOX[:5], "--zoom", "25", *MJ], "between 0 and 24"),
    case("zoom-negative", [*BBOX[:5], "--zoom", "-1", *MJ], "between 0 and 24"),
    case("tilesize-300", [*BBOX, "--tilesize", "300", *MJ], "300"),
    case("max-pixels-tiny", [*BBOX, "--max-pixels", "100", *MJ], "max-pixels"),
    case("split-zoom-above-zoom", [*BBOX, "--split-zoom", "9", *MJ], "split"),
    # pixels
    case("method-unknown", [*BBOX, *MJ, "--pixel-selection", "mode"], "unknown pixel selection"),
    case("method-p0", [*BBOX, *MJ, "--pixel-selection", "p0"], "p0"),
    case("method-p100", [*BBOX, *MJ, "--pixel-selection", "p100"], "p100"),
    case("latest-clear-mosaicjson", [*BBOX, *MJ, "--pixel-selection", "latest-clear"], "items"),
    case("bidx-zero", [*BBOX, *MJ, "--bidx", "0"], "1-based"),
    case("bidx-beyond-count", [*BBOX, *MJ, "--bidx", "9"], "9"),
    case("expression-unknown-band", [*BBOX, *MJ, "--expression", "b7*2"], "band index 7"),
    case("bidx-and-expression", [*BBOX, *MJ, "--bidx", "1", "--expression", "b1*2"], "together"),
    case("resampling-unknown", [*BBOX, *MJ, "--resampling", "fancy"], "fancy"),
    case("mask-bits-no-band", [*BBOX, *MJ, "--mask-bits", "landsat"], "--mask-band"),
    case("mask-bits-kind", [*BBOX, *MJ, "--mask-band", "1", "--mask-bits", "modis"], "modis"),
    case(
        "mask-expression-garbage",
        [*BBOX, *MJ, "--mask-band", "1", "--mask-expression", "qa &"],
        "invalid",
    ),
    case(
        "mask-expression-overflow",
        [*BBOX, *MJ, "--mask-band", "1", "--mask-expression", "qa << 99999999999999999999"],
        "mask",
    ),
    case(
        "mask-band-beyond-count",
        [*BBOX, *MJ, "--mask-band", "9"],
        "9",
    ),
    # visual
    case("rescale-text", [*BBOX, *MJ, "--rescale", "a,b"], "MIN,MAX"),
    case("rescale-inverted", [*BBOX, *MJ, "--rescale", "10,5"], "MIN < MAX"),
    case("color-ops-without-rescale", [*BBOX, *MJ, "--color-ops", "gamma RGB 3.5"], "--rescale"),
    case("rescale-infinite", [*BBOX, *MJ, "--rescale", "-inf,inf"], "finite"),
    case("color-ops-garbage", [*BBOX, *MJ, "--rescale", "0,30000", "--color-ops", "x y z"], "ops"),
    # cog
    case("cog-profile-unknown", [*BBOX, *MJ, "--cog-profile", "png"], "png"),
    case("webp-uint16", [*BBOX, *MJ, "--cog-profile", "webp"], "uint8"),
    case(
        "co-compress-nope",
        [*BBOX, *MJ, "--co", "COMPRESS=NOPE"],
        "COMPRESS",
    ),
    case(
        "co-blocksize-7",
        [*BBOX, *MJ, "--co", "BLOCKSIZE=7"],
        "BLOCKSIZE",
    ),
    case(
        "config-cachemax-abc",
        [*BBOX, *MJ, "--config", "GDAL_CACHEMAX=abc"],
        "GDAL_CACHEMAX",
    ),
    # tiler
    case("tiler-bad-scheme", [*BBOX, "--tiler", "ftp://h/{z}/{x}/{y}.tif"], "ftp"),
    case("tiler-no-z", [*BBOX, "--tiler", "http://127.0.0.1:9/tiles/{x}/{y}.tif"], "{z}"),
    case("tiler-at-2x", [*BBOX, "--tiler", "http://127.0.0.1:9/{z}/{x}/{y}@2x.tif"], "@2x"),
    case("tiler-no-area", [*TILER, "--zoom", "8"], "--bbox"),
    case(
        "timeout-nan",
        [*BBOX, *TILER, "--timeout", "nan"],
        "timeout",
    ),
    case("timeout-zero", [*BBOX, *TILER, "--timeout", "0"], "timeout"),
    case("retries-negative", [*BBOX, *TILER[:2], "--retries", "-1"], "retries"),
    # sources
    case("no-source", [*BBOX], "source"),
    case("two-sources", [*BBOX, *MJ, *ITEMS], "one source"),
    case("mosaicjson-missing", [*BBOX, "--mosaicjson", "in/nope.json"], "does not exist"),
    case("mosaicjson-not-json", [*BBOX, "--mosaicjson", "in/bad.json"], "not valid JSON"),
    case("mosaicjson-not-mosaicjson", [*BBOX, "--mosaicjson", "in/not_mosaic.json"], "mosaicJSON"),
    case("mosaicjson-dev-zero", [*BBOX, "--mosaicjson", "/dev/zero"], "JSON"),
    case("mosaicjson-with-assets", [*BBOX, *MJ, "--assets", "red"], "--assets"),
    case("items-directory", [*BBOX, "--items", "in/adir", "--assets", "visual"], "directory"),
    case("items-dev-zero", [*BBOX, "--items", "/dev/zero", "--assets", "visual"], "JSON"),
    case("items-mosaicjson", [*BBOX, "--items", "in/mosaic.json", "--assets", "x"], "STAC"),
    case("items-without-assets", [*BBOX, "--items", "in/items.json"], "--assets"),
    case("items-unknown-asset", [*BBOX, *ITEMS[:2], "--assets", "nir"], "nir"),
    case(
        "source-without-crs",
        [*BBOX, "--mosaicjson", "in/nocrs.json"],
        "CRS",
    ),
    case("stac-without-collections", [*BBOX, "--stac", "http://127.0.0.1:9/"], "--collections"),
    # execution
    case("concurrency-zero", [*BBOX, *MJ, "--concurrency", "0"], "concurrency"),
    case("chunk-tiles-zero", [*BBOX, *MJ, "--chunk-tiles", "0"], "chunk-tiles"),
    case(
        "dask-both",
        [*BBOX, *MJ, "--dask-scheduler", "tcp://127.0.0.1:9", "--dask-local", "1"],
        "not both",
    ),
    case(
        "dask-not-installed",
        [*BBOX, *MJ, "--dask-scheduler", "tcp://127.0.0.1:9"],
        "mosaic-assembler[dask]",
        prelude=NO_DASK,
    ),
    # outputs
    case("output-exists", [*BBOX, *MJ, "in/exists.tif"], "--overwrite", out=False),
    case("output-missing-dir", [*BBOX, *MJ, "no/such/dir/out.tif"], "does not exist", out=False),
]


@pytest.mark.parametrize("args,message,stdin,prelude", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, args, message, stdin, prelude):
    before = _snapshot(workdir)
    r = run_cli(workdir, args, stdin=stdin, prelude=prelude)
    stderr = r.stderr.decode(errors="replace")
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "unexpected" not in lines[0], stderr
    assert message in lines[0], stderr
    assert _snapshot(workdir) == before


def test_at_least_fifty_bad_inputs():
    assert len(CASES) >= 50


def test_mosaicjson_quadkeys_far_below_the_run_zoom_run_fine(workdir):
    """A 30-digit quadkey used to enumerate 4^22 child quadkeys per zoom-8 tile."""
    scene = workdir / "in" / "scene.tif"
    qk = mercantile.quadkey(mercantile.tile(*CENTER, 30))
    doc = json.loads((workdir / "in" / "mosaic.json").read_text())
    doc.update(minzoom=30, maxzoom=30, quadkey_zoom=30, tiles={qk: [str(scene)]})
    (workdir / "deep.json").write_text(json.dumps(doc))
    r = run_cli(workdir, [*BBOX, "--mosaicjson", "deep.json", "-q", OUT])
    assert r.returncode == 0, r.stderr.decode()
    with rasterio.open(workdir / OUT) as src:
        assert src.count == 3 and src.read_masks(1).any()

"""The assemble-mosaic command: outputs, dry run, JSON summary, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

from mosaic_assembler.cli import cli


def _bbox_args(scenes):
    return ["--bbox", *map(str, scenes.bbox), "--zoom", str(scenes.zoom)]


def run_cli(args, input=None):
    """Run the real entry point in a subprocess (as a user would)."""
    return subprocess.run(
        [sys.executable, "-c", "from mosaic_assembler.cli import main; main()", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=300,
    )


def test_cli_median_from_mosaicjson(scenes, tmp_path):
    out = tmp_path / "median.tif"
    r = CliRunner().invoke(
        cli,
        [
            *_bbox_args(scenes),
            "--mosaicjson",
            str(scenes.mosaicjson),
            "--pixel-selection",
            "median",
            "--json",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["path"] == str(out)
    assert summary["tiles_done"] > 0 and summary["tiles_failed"] == 0
    assert summary["size_bytes"] == out.stat().st_size
    assert cog_validate(str(out), quiet=True)[0]


def test_cli_items_with_co_and_profile(scenes, tmp_path):
    from conftest import make_items

    items = make_items(list(scenes.paths), scenes.dir / "items.json", ("red", "green", "blue"))
    out = tmp_path / "o.tif"
    r = CliRunner().invoke(
        cli,
        [
            *_bbox_args(scenes),
            "--items",
            str(items),
            "--assets",
            "red,green",
            "--cog-profile",
            "zstd",
            "--co",
            "LEVEL=9",
            "--config",
            "GDAL_CACHEMAX=32",
            "-q",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as src:
        assert src.count == 2
        assert src.compression.value == "ZSTD"
        assert src.descriptions[0].startswith("red")


def test_dry_run_prints_plan(scenes, tmp_path):
    out = tmp_path / "o.tif"
    r = CliRunner().invoke(
        cli, [*_bbox_args(scenes), "--mosaicjson", str(scenes.mosaicjson), "--dry-run", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "tiles:" in r.stdout and "px" in r.stdout and "uint16" in r.stdout
    assert "uncompressed" in r.stdout
    assert not out.exists()


def test_aoi_from_stdin(scenes, tmp_path):
    poly = {
        "type": "Polygon",
        "coordinates": [[[5.7, 45.35], [6.3, 45.35], [6.0, 45.65], [5.7, 45.35]]],
    }
    out = tmp_path / "o.tif"
    r = run_cli(
        [
            "--aoi",
            "-",
            "--zoom",
            "9",
            "--mosaicjson",
            str(scenes.mosaicjson),
            "--clip",
            "-q",
            str(out),
        ],
        input=json.dumps(poly),
    )
    assert r.returncode == 0, r.stderr
    assert out.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bbox", "10", "50", "11", "49", "--zoom", "9"], "inverted"),
        (["--bbox", "-190", "40", "11", "49", "--zoom", "9"], "outside -180..180"),
        (["--bbox", "nan", "40", "11", "49", "--zoom", "9"], "finite"),
        (
            ["--bbox", "5", "45", "6", "46", "--zoom", "25"],
            "zoom must be an integer between 0 and 24",
        ),
        (
            ["--bbox", "5", "45", "6", "46", "--zoom", "9", "--pixel-selection", "mode"],
            "unknown pixel selection 'mode'; valid: first",
        ),
        (["--bbox", "5", "45", "6", "46", "--zoom", "9", "--max-pixels", "100"], "lower zoom"),
        (["--bbox", "10", "10", "10.5", "10.5", "--zoom", "9"], "intersects no asset"),
        (["--bbox", "5", "45", "6", "46", "--zoom", "9", "--aoi", "x.geojson"], "not both"),
    ],
)
def test_bad_input_one_line_exit_2(scenes, tmp_path, args, message):
    out = tmp_path / "o.tif"
    r = run_cli([*args, "--mosaicjson", str(scenes.mosaicjson), str(out)])
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("Error: ") and message in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_sources_and_outputs(scenes, tmp_path):
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "aoi_point.geojson").write_text('{"type": "Point", "coordinates": [6, 45]}')
    (tmp_path / "exists.tif").write_text("x")
    base = ["--bbox", *map(str, scenes.bbox), "--zoom", "9"]
    cases = [
        ([*base, "--mosaicjson", str(tmp_path / "nope.json"), "o.tif"], "does not exist"),
        ([*base, "--mosaicjson", str(tmp_path / "bad.json"), "o.tif"], "not valid JSON"),
        (
            [
                "--aoi",
                str(tmp_path / "aoi_point.geojson"),
                "--zoom",
                "9",
                "--mosaicjson",
                str(scenes.mosaicjson),
                "o.tif",
            ],
            "Polygon or MultiPolygon",
        ),
        (
            [*base, "--mosaicjson", str(scenes.mosaicjson), str(tmp_path / "exists.tif")],
            "--overwrite",
        ),
        (
            [*base, "--mosaicjson", str(scenes.mosaicjson), str(tmp_path / "no" / "o.tif")],
            "does not exist",
        ),
        ([*base, "--items", str(scenes.mosaicjson), "--assets", "red", "o.tif"], "not a STAC"),
        (
            [*base, "--mosaicjson", str(scenes.mosaicjson), "--cog-profile", "jpeg", "o.tif"],
            "needs uint8",
        ),
    ]
    for args, message in cases:
        r = run_cli(args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (args, r.stderr)
    assert (tmp_path / "exists.tif").read_text() == "x"


def test_unwritable_output(scenes, tmp_path):
    base = [*_bbox_args(scenes), "--mosaicjson", str(scenes.mosaicjson)]
    r = run_cli([*base, str(tmp_path)])
    assert r.returncode == 2 and "is a directory" in r.stderr
    # /proc refuses new files even for root
    r = run_cli([*base, "/proc/o.tif"])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "not writable" in lines[0] or "cannot create" in lines[0]


def test_version_and_help():
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0 and "demo" in r.output
    r = CliRunner().invoke(cli, ["assemble", "--help"])
    assert "--pixel-selection" in r.output and "lastbandhigh" in r.output


def test_demo_command_end_to_end(tmp_path):
    out_dir = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["demo", str(out_dir), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    out = out_dir / "median.tif"
    assert summary["path"] == str(out) and summary["count"] == 4 and summary["dtype"] == "uint16"
    assert cog_validate(str(out), quiet=True)[0]
    with rasterio.open(out) as src:
        assert 0.2 < (src.dataset_mask() > 0).mean() < 1.0
    assert (out_dir / "items.json").exists() and (out_dir / "mosaic.json").exists()


def test_cli_tiler(scenes, titiler, tmp_path):
    out = tmp_path / "o.tif"
    template = titiler.mosaic_template(scenes.mosaicjson)
    r = run_cli(
        [
            *_bbox_args(scenes),
            "--tiler",
            template,
            "--pixel-selection",
            "median",
            "--concurrency",
            "4",
            "--json",
            str(out),
        ]
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["tiles_done"] > 0 and summary["count"] == 3
    r = run_cli(
        [
            *_bbox_args(scenes),
            "--tiler",
            template,
            "--tiler-param",
            "pixel_selection=bogus",
            str(tmp_path / "o2.tif"),
        ]
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert (
        r.returncode == 2 and len(lines) == 1 and "unknown pixel selection 'bogus'" in lines[0]
    ), r.stderr
    r = run_cli(
        [
            *_bbox_args(scenes),
            "--tiler",
            template,
            "--tiler-param",
            "rescale=a,b",
            str(tmp_path / "o2.tif"),
        ]
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "HTTP 422" in lines[0], r.stderr
    r = run_cli([*_bbox_args(scenes), "--tiler", template, "--dry-run", str(out) + ".x"])
    assert r.returncode == 0 and "bands decided by the tiler" in r.stdout


def test_tiler_template_pixel_selection(tmp_path):
    """A --tiler template's pixel_selection is the method (e.g. for --dry-run and the method
    checks); a different --pixel-selection is refused instead of being silently ignored."""
    from mosaic_assembler.errors import ConfigError
    from mosaic_assembler.options import build_options

    tpl = "http://127.0.0.1:9/mosaic/tiles/{z}/{x}/{y}?url=m.json&pixel_selection=median"
    kw = dict(bbox=(5, 45, 6, 46), zoom=9, tiler=tpl)
    assert build_options(**kw).read.pixel_selection == "median"
    assert build_options(**kw, pixel_selection="median").read.pixel_selection == "median"
    with pytest.raises(
        ConfigError, match="pixel_selection=median and `pixel_selection` is highest"
    ):
        build_options(**kw, pixel_selection="highest")
    r = run_cli(
        [
            "--bbox",
            "5",
            "45",
            "6",
            "46",
            "--zoom",
            "9",
            "--tiler",
            tpl,
            "--pixel-selection",
            "highest",
            str(tmp_path / "o.tif"),
        ]
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "give it in one place" in lines[0], r.stderr
    r = run_cli(
        [
            "--bbox",
            "5",
            "45",
            "6",
            "46",
            "--zoom",
            "9",
            "--tiler",
            tpl.replace("median", "mode"),
            str(tmp_path / "o.tif"),
        ]
    )
    assert r.returncode == 2 and "unknown pixel selection 'mode'" in r.stderr, r.stderr


def test_core_messages_name_parameters_the_cli_names_flags(tmp_path):
    """The core names assemble()'s parameters; the CLI shows its own flags for them."""
    from mosaic_assembler.errors import ConfigError
    from mosaic_assembler.options import build_options

    tpl = "http://127.0.0.1:9/mosaic/tiles/{z}/{x}/{y}?url=m.json"
    kw = dict(bbox=(5, 45, 6, 46), zoom=9, tiler=tpl, pixel_selection="geomedian")
    with pytest.raises(ConfigError, match="`pixel_selection` geomedian is computed in-process"):
        build_options(**kw)
    r = run_cli(["--bbox", "5", "45", "6", "46", "-z", "9", "--tiler", tpl,
                 "--pixel-selection", "geomedian", str(tmp_path / "o.tif")])  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.startswith("Error: --pixel-selection geomedian is computed in-process")
    r = run_cli(["--bbox", "5", "45", "6", "46", "-z", "9", "--stac", "http://127.0.0.1:9",
                 "--tiler-param", "a=b", str(tmp_path / "o.tif")])  # fmt: skip
    assert "Error: --stac needs --collections" in r.stderr, r.stderr


def _main(argv, capsys):
    from mosaic_assembler.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


def test_library_info_logs_stay_quiet_and_vv_shows_tracebacks(monkeypatch, capsys, tmp_path):
    """cogeo-mosaic sets the root logger to INFO when imported: the CLI still owns its logging.

    A library's INFO line never reaches stderr without -v; -q prints nothing but the error;
    -vv shows the traceback of an unexpected error.
    """
    import logging

    import mosaic_assembler.api as api

    def chatty_run(*args, **kwargs):
        import cogeo_mosaic.utils  # noqa: F401 - sets the root logger to INFO

        logging.getLogger("rasterio._err").info("GDAL signalled an error: chatter")
        logging.getLogger("mosaic_assembler.pipeline").info("our own info")
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "run", chatty_run)
    args = ["--bbox", "5", "45", "6", "46", "-z", "9", "--mosaicjson", "m.json",
            str(tmp_path / "o.tif")]  # fmt: skip
    code, err = _main(args, capsys)
    assert code == 1
    assert err.splitlines()[-1] == (
        "Error: unexpected RuntimeError: boom (run with -vv for a traceback)"
    )
    assert "chatter" not in err and "our own info" not in err  # INFO: neither ours nor theirs
    code, err = _main([*args, "-q"], capsys)
    assert "chatter" not in err and "our own info" not in err
    code, err = _main([*args, "-v"], capsys)
    assert "INFO: our own info" in err and "Traceback" not in err
    code, err = _main([*args, "-vv"], capsys)
    assert code == 1 and "Traceback (most recent call last)" in err and "boom" in err


def test_every_log_record_is_redacted(monkeypatch, capsys, tmp_path):
    """Credential query parameters are redacted from every log line, whichever logger logs."""
    import logging

    import mosaic_assembler.api as api

    def leaky_run(*args, **kwargs):
        url = "http://127.0.0.1:9/t/1/2/3.tif?token=planted-s3cret&x=1"
        logging.getLogger("mosaic_assembler.some.new.module").warning("fetching %s", url)
        logging.getLogger("a.library").warning("GET %s", url)
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "run", leaky_run)
    args = ["--bbox", "5", "45", "6", "46", "-z", "9", "--mosaicjson", "m.json",
            str(tmp_path / "o.tif"), "-vv"]  # fmt: skip
    code, err = _main(args, capsys)
    assert "fetching http://127.0.0.1:9/t/1/2/3.tif?token=" in err and "GET " in err
    assert "planted-s3cret" not in err


@pytest.mark.parametrize("quiet", [0, 1])
def test_python_warnings_pass_the_same_gate(quiet):
    """A library's Python warning is shown as one WARNING line, and silenced by -q."""
    code = (
        "import sys, warnings\n"
        "from mosaic_assembler.cli._common import setup_logging\n"
        "setup_logging(0, int(sys.argv[1]))\n"
        "warnings.warn('a library warning', UserWarning)\n"
        "warnings.warn('Some statistics data in STAC are invalid, they will be ignored.')\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(quiet)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if quiet:
        assert r.stderr == ""
    else:
        assert "WARNING: " in r.stderr and "a library warning" in r.stderr
        assert "statistics data" not in r.stderr  # rio-tiler's false alarm


def test_the_cli_loads_rio_tiler_without_xarray():
    """main()'s import hook: rio-tiler's readers load, xarray does not, and can still be
    imported afterwards (it is installed in the test environment: odc-stac needs it)."""
    code = (
        "import sys\n"
        "from mosaic_assembler.cli import main\n"
        "try:\n"
        "    main(['status', '/nonexistent-run-dir'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import rio_tiler.io\n"
        "from rio_tiler.io import Reader\n"
        "assert 'xarray' not in sys.modules and 'rioxarray' not in sys.modules\n"
        "import xarray\n"
        "assert xarray.DataArray\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr

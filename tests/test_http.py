"""HTTP tiler against a real TiTiler on 127.0.0.1, with and without injected faults."""

from __future__ import annotations

import time

import numpy
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate
from servers import FaultProxy

from mosaic_assembler import ConfigError, EmptyPlanError, TilesFailedError, assemble
from mosaic_assembler.errors import TilerRequestError
from mosaic_assembler.tilers import ReadOptions
from mosaic_assembler.tilers.http import HttpOptions, build_url_template


def assert_same_cog(a, b):
    with rasterio.open(a) as sa, rasterio.open(b) as sb:
        assert sa.profile["dtype"] == sb.profile["dtype"] and sa.count == sb.count
        assert sa.transform == sb.transform and sa.shape == sb.shape
        ma, mb = sa.dataset_mask(), sb.dataset_mask()
        numpy.testing.assert_array_equal(ma, mb)
        da, db = sa.read(), sb.read()
        numpy.testing.assert_array_equal(da[:, ma > 0], db[:, mb > 0])
        assert (ma > 0).any()


def _valid(path):
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid and not errors


@pytest.mark.parametrize("method", ["first", "median", "highest", "lastbandhigh"])
def test_titiler_equals_in_process(scenes, titiler, tmp_path, method):
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    common = dict(bbox=scenes.bbox, zoom=scenes.zoom, pixel_selection=method, progress=False)
    assemble(local, mosaicjson=scenes.mosaicjson, **common)
    r = assemble(remote, tiler=titiler.mosaic_template(scenes.mosaicjson), **common)
    _valid(local)
    _valid(remote)
    assert_same_cog(local, remote)
    assert r.tiles_done > 0


def test_empty_tiles_at_the_edge_are_masked(scenes, titiler, tmp_path):
    """The bbox reaches past the mosaic: TiTiler answers 204 there; those tiles are masked."""
    bbox = (5.0, 45.0, 7.0, 46.0)
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    r = assemble(
        remote, bbox=bbox, zoom=9, tiler=titiler.mosaic_template(scenes.mosaicjson), progress=False
    )
    assert r.tiles_empty > 0 and r.tiles_failed == 0
    assemble(local, bbox=bbox, zoom=9, mosaicjson=scenes.mosaicjson, progress=False)
    assert_same_cog(local, remote)


def test_faults_are_retried_to_an_identical_output(scenes, titiler, tmp_path):
    # the delay fault outlasts the client timeout; the timeout leaves a loaded server time
    proxy = FaultProxy(titiler.url, seed=42, rate=0.4, delay=9.0)
    try:
        clean, faulty = tmp_path / "clean.tif", tmp_path / "faulty.tif"
        common = dict(bbox=scenes.bbox, zoom=scenes.zoom, pixel_selection="median", progress=False)
        assemble(clean, tiler=titiler.mosaic_template(scenes.mosaicjson), **common)
        template = titiler.mosaic_template(scenes.mosaicjson).replace(titiler.url, proxy.url)
        r = assemble(
            faulty,
            tiler=template,
            retries=12,
            timeout=6.0,
            backoff=0.05,
            http_seed=1,
            concurrency=4,
            **common,
        )
    finally:
        proxy.stop()
    assert r.tiles_failed == 0
    injected = {k: v for k, v in proxy.counts.items() if k != "ok"}
    assert sum(injected.values()) >= 4, proxy.counts  # faults really happened
    assert len(injected) >= 3, proxy.counts
    assert_same_cog(clean, faulty)


def test_every_tile_failing_is_a_clear_error(scenes, titiler, tmp_path):
    proxy = FaultProxy(titiler.url, mode="always-503")
    out = tmp_path / "o.tif"
    try:
        template = titiler.mosaic_template(scenes.mosaicjson).replace(titiler.url, proxy.url)
        with pytest.raises(TilesFailedError, match=r"tiles failed .*HTTP 503") as e:
            assemble(
                out,
                bbox=scenes.bbox,
                zoom=scenes.zoom,
                tiler=template,
                retries=2,
                backoff=0.01,
                progress=False,
            )
    finally:
        proxy.stop()
    assert len(e.value.failed) == len(list(e.value.failed))
    assert proxy.counts["503"] == 3 * len(e.value.failed)  # 1 try + 2 retries per tile
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["o.tif.run"]


def test_422_stops_at_once(scenes, titiler, tmp_path):
    proxy = FaultProxy(titiler.url, mode="pass")
    try:
        template = (
            titiler.mosaic_template(scenes.mosaicjson).replace(titiler.url, proxy.url)
            + "&resampling=bogus"
        )
        t0 = time.monotonic()
        with pytest.raises(TilerRequestError, match="HTTP 422.*resampling") as e:
            assemble(
                tmp_path / "o.tif",
                bbox=scenes.bbox,
                zoom=scenes.zoom,
                tiler=template,
                concurrency=2,
                progress=False,
            )
        assert e.value.status == 422
        assert time.monotonic() - t0 < 10
    finally:
        proxy.stop()
    assert proxy.counts["ok"] <= 4  # no retries; pending tiles cancelled
    assert list(tmp_path.iterdir()) == []


def test_424_unreadable_mosaic_is_a_config_error(titiler, tmp_path, scenes):
    with pytest.raises(TilerRequestError, match="424"):
        assemble(
            tmp_path / "o.tif",
            bbox=scenes.bbox,
            zoom=scenes.zoom,
            tiler=titiler.mosaic_template("/nonexistent/mosaic.json"),
            progress=False,
        )


def test_all_204_is_empty(titiler, tmp_path, scenes):
    with pytest.raises(EmptyPlanError, match="all .* tiles were empty"):
        assemble(
            tmp_path / "o.tif",
            bbox=(100.0, 10.0, 100.5, 10.5),
            zoom=9,
            tiler=titiler.mosaic_template(scenes.mosaicjson),
            progress=False,
        )


def test_url_template_parameters():
    read = ReadOptions(pixel_selection="median", tilesize=512, bidx=(3, 2, 1))
    t = build_url_template(
        HttpOptions("http://h/t/{z}/{x}/{y}.tif?url=/m.json", params=(("rescale", "0,1"),)), read
    )
    assert t.startswith("http://h/t/{z}/{x}/{y}.tif?")
    assert "url=/m.json" in t and "tilesize=512" in t and "pixel_selection=median" in t
    assert t.count("bidx=") == 3 and "rescale=0,1" in t
    t2 = build_url_template(
        HttpOptions("http://h/{z}/{x}/{y}.tif?pixel_selection=first&tilesize={tilesize}"), read
    )
    assert "pixel_selection=median" not in t2 and t2.count("tilesize=") == 1


@pytest.mark.parametrize(
    "template,msg",
    [
        ("http://h/{z}/{x}.tif", "lacks {y}"),
        ("ftp://h/{z}/{x}/{y}.tif", "http"),
        ("http://h/{z}/{x}/{y}@2x.tif", "@2x"),
    ],
)
def test_bad_templates(template, msg):
    with pytest.raises(ConfigError, match=msg):
        HttpOptions(template)


def test_header_from_environment_is_sent_not_logged(scenes, titiler, tmp_path, monkeypatch, caplog):
    import logging

    seen = []
    proxy = FaultProxy(titiler.url, mode="pass")
    orig = proxy._handle

    def spy(h):
        seen.append(h.headers.get("Authorization"))
        orig(h)

    proxy._handle = spy
    monkeypatch.setenv("MA_TEST_TOKEN", "s3cret")
    caplog.set_level(logging.DEBUG)
    try:
        template = titiler.mosaic_template(scenes.mosaicjson).replace(titiler.url, proxy.url)
        assemble(
            tmp_path / "o.tif",
            bbox=scenes.bbox,
            zoom=scenes.zoom,
            tiler=template,
            headers={"Authorization": "Bearer ${MA_TEST_TOKEN}"},
            progress=False,
        )
    finally:
        proxy.stop()
    assert seen and all(v == "Bearer s3cret" for v in seen)
    assert "s3cret" not in caplog.text
    with pytest.raises(ConfigError, match="MA_UNSET_VAR"):
        assemble(
            tmp_path / "o2.tif",
            bbox=scenes.bbox,
            zoom=scenes.zoom,
            tiler=template,
            headers={"Authorization": "${MA_UNSET_VAR}"},
            progress=False,
        )

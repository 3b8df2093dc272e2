"""`serve`: the app through TestClient and the real command, against rio-tiler and rasterio."""

from __future__ import annotations

import json

import morecantile
import numpy
import pytest
import rasterio
import requests
from pyproj import Geod
from rasterio.io import MemoryFile
from rasterio.warp import transform, transform_bounds
from rio_tiler.io import Reader
from serve_fixtures import (
    GOOD,
    GRANTS,
    OTHER,
    centre,
    expected_window,
    make_serve_inputs,
    run_serve,
)

from mosaic_assembler.cli import main
from mosaic_assembler.serve import create_app, grants_from_dict, open_layers

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_serve_inputs(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def layers(inputs):
    return open_layers(inputs.specs())


@pytest.fixture(scope="module")
def client(layers):
    app = create_app(layers, grants_from_dict(GRANTS, layers), max_cutout_pixels=200 * 200)
    return TestClient(app)


def decode(body: bytes) -> numpy.ndarray:
    with MemoryFile(body) as mem, mem.open() as ds:
        return ds.read()


def read_tif(body: bytes):
    with MemoryFile(body) as mem, mem.open() as ds:
        return ds.read(), ds.dataset_mask(), ds.transform, ds.crs, ds.nodata


def test_layers_list(client, inputs):
    shown = client.get("/api/layers").json()
    assert [x["name"] for x in shown] == ["rgb", "green", "split"]  # secret needs a grant
    rgb = shown[0]
    assert rgb["kind"] == "cog" and rgb["base"] == "/cog/rgb" and rgb["count"] == 3
    assert shown[2]["kind"] == "mosaicjson"
    with rasterio.open(inputs.rgb) as src:
        expect = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    assert rgb["bounds"] == pytest.approx(expect)
    assert "path" not in rgb and "files" not in rgb  # no path leaves the server


@pytest.mark.parametrize("name", ["rgb", "green"])
def test_tile_equals_rio_tiler(client, inputs, name):
    path = getattr(inputs, name)
    with Reader(str(path)) as r:
        z = r.maxzoom
        t = TMS.tile(*centre(path), z)
        img = r.tile(t.x, t.y, t.z)
    resp = client.get(f"/cog/{name}/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}.png")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    got = decode(resp.content)
    numpy.testing.assert_array_equal(got[:3], img.data)
    numpy.testing.assert_array_equal(got[3], img.mask)


def test_tile_of_split_output(client, inputs):
    # the seam of the split, at the native zoom: the mosaic of both COGs
    lon, lat = centre(inputs.rgb)
    t = TMS.tile(lon, lat, 12)
    resp = client.get(f"/mosaicjson/split/tiles/WebMercatorQuad/12/{t.x}/{t.y}.png")
    assert resp.status_code == 200
    got = decode(resp.content)
    assert (got[3] == 255).any()
    colours = {tuple(int(v) for v in px) for px in got[:3].reshape(3, -1).T[got[3].ravel() > 0]}
    assert colours <= {(220, 40, 40), (40, 200, 60), (40, 60, 220)}


def test_statistics_equal_rio_tiler(client, inputs):
    got = client.get("/cog/rgb/statistics").json()
    with Reader(str(inputs.rgb)) as r:
        expect = r.statistics()
    assert set(got) == set(expect)
    for band, stats in expect.items():
        for key in ("min", "max", "mean", "count", "std", "valid_percent"):
            assert got[band][key] == pytest.approx(getattr(stats, key)), (band, key)
        assert got[band]["histogram"][0] == list(stats.histogram[0])
        assert got[band]["histogram"][1] == pytest.approx(stats.histogram[1])


def test_point_equals_rasterio(client, inputs):
    lon, lat = centre(inputs.rgb)
    lon -= 0.03  # the red half
    got = client.get(f"/cog/rgb/point/{lon},{lat}").json()
    with rasterio.open(inputs.rgb) as src:
        xs, ys = transform("EPSG:4326", src.crs, [lon], [lat])
        expect = next(src.sample([(xs[0], ys[0])]))
    assert got["values"] == [float(v) for v in expect] == [220.0, 40.0, 40.0]


@pytest.mark.parametrize("name", ["rgb", "green"])
def test_bbox_cutout_equals_window(client, inputs, name):
    path = getattr(inputs, name)
    with rasterio.open(path) as src:  # a box over the north-west corner: nodata border inside
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    bbox = (w - 0.001, n - 0.02, w + 0.03, n + 0.001)
    resp = client.get("/cutout", params={"layer": name, "bbox": ",".join(map(str, bbox))})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/tiff"
    data, mask, tf, crs, nodata = read_tif(resp.content)
    e_data, e_mask, e_tf, e_crs = expected_window(path, bbox)
    assert crs == e_crs and tf.almost_equals(e_tf) and nodata == 0
    numpy.testing.assert_array_equal(data, e_data)
    numpy.testing.assert_array_equal(mask, e_mask)
    assert (mask == 0).any() and (mask == 255).any()


def test_bbox_cutout_of_split_equals_the_two_windows(client, inputs):
    lon, lat = centre(inputs.rgb)
    bbox = (lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)  # across the seam
    resp = client.get("/cutout", params={"layer": "split", "bbox": ",".join(map(str, bbox))})
    assert resp.status_code == 200, resp.text
    data, mask, tf, crs, _ = read_tif(resp.content)
    a = expected_window(inputs.split / "a.tif", bbox)
    b = expected_window(inputs.split / "b.tif", bbox)
    assert tf.almost_equals(a[2]) and crs == a[3]
    numpy.testing.assert_array_equal(data, numpy.concatenate([a[0], b[0]], axis=2))
    numpy.testing.assert_array_equal(mask, numpy.concatenate([a[1], b[1]], axis=1))


def test_circle_cutout_is_masked_outside(client, inputs):
    lon, lat = centre(inputs.rgb)
    radius = 1500.0
    resp = client.get("/cutout", params={"layer": "rgb", "circle": f"{lon},{lat},{radius}"})
    assert resp.status_code == 200, resp.text
    data, mask, tf, crs, _ = read_tif(resp.content)
    rows, cols = numpy.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    xs, ys = rasterio.transform.xy(tf, rows.ravel(), cols.ravel())
    lons, lats = transform(crs, "EPSG:4326", xs, ys)
    _, _, dist = Geod(ellps="WGS84").inv(
        numpy.full(len(lons), lon), numpy.full(len(lons), lat), lons, lats
    )
    dist = numpy.asarray(dist).reshape(mask.shape)
    assert (mask[dist > radius * 1.01] == 0).all()
    assert (mask[dist < radius * 0.99] == 255).all()  # the centre is inside the data
    assert (data[:, mask == 0] == 0).all()
    # the pixels kept are the COG's own
    with rasterio.open(inputs.rgb) as src:
        win = rasterio.windows.from_bounds(
            *rasterio.transform.array_bounds(*mask.shape, tf), src.transform
        )
        direct = src.read(window=win.round_offsets().round_lengths())
    numpy.testing.assert_array_equal(data[:, mask > 0], direct[:, mask > 0])


def test_cutout_too_large_is_413_with_the_limit(client, inputs):
    w, s, e, n = (5.3, 45.3, 5.6, 45.6)
    resp = client.get("/cutout", params={"layer": "rgb", "bbox": f"{w},{s},{e},{n}"})
    assert resp.status_code == 413
    assert "40000" in resp.json()["detail"]  # the limit (200 x 200) is in the message
    resp = client.get("/cutout", params={"layer": "rgb", "circle": "5.45,45.45,50000"})
    assert resp.status_code == 413


@pytest.mark.parametrize(
    "params",
    [{"bbox": "1,2,3"}, {"bbox": "5,45,4,46"}, {"circle": "5,45,-1"}, {}, {"bbox": "50,10,51,11"}],
)
def test_cutout_bad_input(client, params):
    resp = client.get("/cutout", params={"layer": "rgb", **params})
    assert resp.status_code in (400, 404)
    assert resp.json()["detail"]


def test_tile_cache_is_bounded(layers, inputs):
    limit = 8_000
    app = create_app(layers, cache_bytes=limit)
    c = TestClient(app)
    with Reader(str(inputs.rgb)) as r:
        z = r.maxzoom
        t = TMS.tile(*centre(inputs.rgb), z)
    url = f"/cog/rgb/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}.png"
    first = c.get(url, params={"rescale": "0,255"})
    assert first.headers["x-tile-cache"] == "miss"
    again = c.get(url, params={"rescale": "0,255"})
    assert again.headers["x-tile-cache"] == "hit" and again.content == first.content
    sizes = []
    for lo in range(40):
        resp = c.get(url, params={"rescale": f"{lo},255"})
        assert resp.status_code == 200
        sizes.append(len(resp.content))
    cache = app.state.tile_cache
    assert sum(sizes) > 2 * limit  # filled well beyond the limit
    assert 0 < cache.size <= limit and len(cache) < 40


ENDPOINTS = {
    "tile": "/cog/{layer}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
    "statistics": "/cog/{layer}/statistics",
    "point": "/cog/{layer}/point/{lon},{lat}",
    "info": "/cog/{layer}/info",
    "cutout_bbox": "/cutout?layer={layer}&bbox={bbox}",
    "cutout_circle": "/cutout?layer={layer}&circle={lon},{lat},1000",
}
AUTH = {
    "none": None,
    "wrong": "Bearer not-a-token",
    "other": f"Bearer {OTHER}",
    "good": f"Bearer {GOOD}",
}


def urls_for(path, layer):
    lon, lat = centre(path)
    t = TMS.tile(lon, lat, 12)
    bbox = f"{lon - 0.005},{lat - 0.005},{lon + 0.005},{lat + 0.005}"
    return {
        k: v.format(layer=layer, z=12, x=t.x, y=t.y, lon=lon, lat=lat, bbox=bbox)
        for k, v in ENDPOINTS.items()
    }


@pytest.mark.parametrize("who", list(AUTH))
def test_grants_matrix(client, inputs, who):
    headers = {"Authorization": AUTH[who]} if AUTH[who] else {}
    granted = {"none": 401, "wrong": 401, "other": 403, "good": 200}[who]
    public = 401 if who == "wrong" else 200  # an unknown token is refused everywhere
    for endpoint, url in urls_for(inputs.secret, "secret").items():
        resp = client.get(url, headers=headers)
        assert resp.status_code == granted, (who, endpoint, resp.text)
        if granted == 401:
            assert resp.headers["www-authenticate"] == "Bearer"
    for endpoint, url in urls_for(inputs.rgb, "rgb").items():
        assert client.get(url, headers=headers).status_code == public, (who, endpoint)
    for listing in ("/api/layers", "/api/config"):
        resp = client.get(listing, headers=headers)
        assert resp.status_code == public, (who, listing)
        if public == 200:
            body = resp.json()
            names = [x["name"] for x in (body["layers"] if "layers" in body else body)]
            assert ("secret" in names) == (who == "good"), (who, listing)
    assert client.get("/", headers=headers).status_code == 200  # the viewer page itself


def test_cached_tile_still_needs_the_grant(client, inputs):
    url = urls_for(inputs.secret, "secret")["tile"]
    assert client.get(url, headers={"Authorization": f"Bearer {GOOD}"}).status_code == 200
    assert (
        client.get(url, headers={"Authorization": f"Bearer {GOOD}"}).headers["x-tile-cache"]
        == "hit"
    )
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": f"Bearer {OTHER}"}).status_code == 403


def test_viewer_and_leaflet_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/leaflet/leaflet.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    for f in ("leaflet/leaflet.js", "leaflet/leaflet.css", "viewer/viewer.js", "viewer/viewer.css"):
        assert client.get(f"/static/{f}").status_code == 200, f


def test_real_server(inputs, tmp_path):
    log = tmp_path / "serve.log"
    args = [*inputs.specs(), "--grants", str(inputs.grants), "--max-cutout-pixels", "90000"]
    with run_serve(args, log) as base:
        good = {"Authorization": f"Bearer {GOOD}"}
        assert requests.get(f"{base}/?token={GOOD}", timeout=10).status_code == 200
        names = [x["name"] for x in requests.get(f"{base}/api/layers", timeout=10).json()]
        assert names == ["rgb", "green", "split"]
        names = [
            x["name"] for x in requests.get(f"{base}/api/layers", headers=good, timeout=10).json()
        ]
        assert "secret" in names
        urls = urls_for(inputs.secret, "secret")
        assert requests.get(base + urls["tile"], timeout=10).status_code == 401
        assert requests.get(base + urls["tile"], headers=good, timeout=10).status_code == 200
        assert requests.get(f"{base}{urls['tile']}?token={OTHER}", timeout=10).status_code == 401
        with Reader(str(inputs.rgb)) as r:
            t = TMS.tile(*centre(inputs.rgb), r.maxzoom)
            img = r.tile(t.x, t.y, t.z)
        resp = requests.get(
            f"{base}/cog/rgb/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png", timeout=10
        )
        numpy.testing.assert_array_equal(decode(resp.content)[:3], img.data)
        big = requests.get(f"{base}/cutout?layer=rgb&bbox=5.3,45.3,5.6,45.6", timeout=10)
        assert big.status_code == 413 and "90000" in big.json()["detail"]
    text = log.read_text()
    assert "GET /api/layers" in text  # the access log is on …
    assert GOOD not in text and OTHER not in text  # … and holds no token
    assert "token=[redacted]" in text


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", *args])
    return e.value.code, capsys.readouterr().err


def test_cli_errors(inputs, tmp_path, capsys):
    code, err = run_cli([], capsys)
    assert code == 2 and err.startswith("Error:") and len(err.strip().splitlines()) == 1
    code, err = run_cli([str(tmp_path / "missing.tif")], capsys)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, err = run_cli([str(inputs.rgb), "--grants", str(bad)], capsys)
    assert code == 2 and err.startswith("Error: grants file") and len(err.strip().splitlines()) == 1
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"layers": {"nope": "team"}, "tokens": {}}))
    code, err = run_cli([str(inputs.rgb), "--grants", str(unknown)], capsys)
    assert code == 2 and "unknown layer 'nope'" in err
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        code, err = run_cli([str(inputs.rgb), "--port", str(port)], capsys)
    assert code == 2 and "in use" in err and len(err.strip().splitlines()) == 1


def test_redact_tokens():
    from mosaic_assembler.serve import redact_tokens

    assert redact_tokens("GET /?token=abc&x=1") == "GET /?token=[redacted]&x=1"
    assert redact_tokens("GET /a%26token%3Dabc HTTP/1.1") == "GET /a%26token%3D[redacted] HTTP/1.1"
    assert (
        redact_tokens("GET /?layer=a&access_token=abc") == "GET /?layer=a&access_token=[redacted]"
    )

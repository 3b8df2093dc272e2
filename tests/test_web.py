"""mosaic_assembler.web: the one HTTP policy, against small servers on 127.0.0.1."""

from __future__ import annotations

import random
import time

import pytest
import requests
from servers import HostileTiler, RecordingServer

from mosaic_assembler import web
from mosaic_assembler.errors import (
    ConfigError,
    HTTPAuthError,
    HTTPNotFoundError,
    HTTPRequestError,
    HTTPServerError,
    SourceError,
    TilerRequestError,
)


@pytest.fixture(scope="module")
def servers():
    rec = RecordingServer()
    tiler = HostileTiler(redirect_to=rec.url)
    yield tiler, rec
    tiler.stop()
    rec.stop()


def test_status_table():
    assert web.error_class(401) is HTTPAuthError and web.error_class(403) is HTTPAuthError
    assert web.error_class(404) is HTTPNotFoundError
    assert web.error_class(422) is HTTPRequestError and web.error_class(424) is HTTPRequestError
    assert web.error_class(503) is HTTPServerError and web.error_class(599) is HTTPServerError
    assert issubclass(TilerRequestError, ConfigError) and issubclass(HTTPServerError, SourceError)
    assert [s for s in (200, 204, 400, 404, 429, 500, 503) if web.is_retryable(s)] == [
        429,
        500,
        503,
    ]
    e = web.error_from_response(422, b'{"detail": [{"loc": ["query", "x"], "msg": "bad"}]}', "T")
    assert isinstance(e, HTTPRequestError) and e.status == 422 and str(e) == "T: query.x: bad"
    long = web.server_message("word " * 200)
    assert len(long) == web.MESSAGE_LIMIT + 1 and long.endswith("…") and "\n" not in long


def test_backoff_is_full_jitter_and_caps_retry_after():
    rng = random.Random(0)
    delays = [web.backoff_delay(3, 0.5, 30.0, rng) for _ in range(2000)]
    assert 0 <= min(delays) < 0.1 and 1.9 < max(delays) <= 2.0  # uniform(0, 0.5 * 2^2)
    assert web.backoff_delay(1, 0.5, 30.0, rng, wait=7.0) == 7.0
    assert web.backoff_delay(1, 0.5, 2.0, rng, wait=99999.0) == 4 * 2.0
    assert web.retry_after({"Retry-After": "3"}) == 3.0 and web.retry_after({}) is None


@pytest.mark.parametrize(
    "name",
    ["token", "access_token", "api_key", "apikey", "key", "sig", "X-Amz-Signature", "password"],
)
def test_credential_names(name):
    assert web.is_credential_name(name)


@pytest.mark.parametrize("name", ["url", "tilesize", "assets", "bidx", "pixel_selection", "z"])
def test_not_credential_names(name):
    assert not web.is_credential_name(name)


def test_redact():
    secrets = web.secrets_of(
        {"Authorization": "Bearer s3cr3t-value", "X-Api-Key": "k3y/v+al"},
        ["http://h/{z}/{x}/{y}.tif?url=/m.json&token=t0ken&X-Amz-Credential=AKIA%2Fx"],
    )
    text = (
        "GET /t?url=/m.json&token=t0ken&sig=abc&X-Amz-Credential=AKIA%2Fx "
        'Authorization: Bearer s3cr3t-value {"key": "k3y%2Fv%2Bal"} and t0ken alone'
    )
    out = web.redact(text, secrets)
    for leak in ("s3cr3t-value", "k3y", "t0ken", "abc", "AKIA"):
        assert leak not in out, out
    assert "url=/m.json" in out and "token=***" in out and "sig=***" in out


def test_body_cap_and_deadline(servers):
    tiler, _ = servers
    s = web.make_session()
    resp = s.get(tiler.template("endless").format(z=1, x=0, y=0), stream=True, timeout=5)
    with pytest.raises(web.BodyError, match="exceeds the 1000000 bytes"):
        web.read_body(resp, 1_000_000, time.monotonic() + 30, 5.0)
    resp = s.get(tiler.template("drip").format(z=1, x=0, y=0), stream=True, timeout=5)
    with pytest.raises(web.BodyError, match="declares 10000000 bytes"):
        web.read_body(resp, 1_000_000, time.monotonic() + 30, 5.0)
    resp = s.get(tiler.template("drip").format(z=1, x=0, y=0), stream=True, timeout=5)
    t0 = time.monotonic()
    with pytest.raises(web.BodyError, match="deadline"):
        web.read_body(resp, 20_000_000, time.monotonic() + 2.5, 5.0)
    assert time.monotonic() - t0 < 4.5  # the deadline, not 5 s per byte


def test_headers_stay_with_their_origin(servers):
    tiler, rec = servers
    rec.seen.clear()
    s = web.make_session({"X-Api-Key": "k", "Authorization": "Bearer b"})
    r = s.get(tiler.template("redirect").format(z=1, x=0, y=0), timeout=5)
    assert r.status_code == 204 and len(rec.seen) == 1
    got = {k.lower() for k in rec.seen[0]}
    assert "x-api-key" not in got and "authorization" not in got
    # plain requests keeps X-Api-Key across origins: what make_session is for
    rec.seen.clear()
    requests.get(
        tiler.template("redirect").format(z=1, x=0, y=0), headers={"X-Api-Key": "k"}, timeout=5
    )
    assert "x-api-key" in {k.lower() for k in rec.seen[0]}

"""The FastAPI app: TiTiler's factories per layer kind, cutouts, grants, a tile cache, the viewer.

Routes (LAYER is a name given at start-up, never a path):

- `/` the viewer; `/static/…` its files and Leaflet's.
- `/api/config`, `/api/layers`: the layers this request may see.
- `/cog/LAYER/…`: titiler.core's `TilerFactory` (tiles, info, statistics, point …).
- `/mosaicjson/LAYER/…`: titiler.mosaic's `MosaicTilerFactory` for split outputs.
- `/cutout?layer=LAYER&bbox=W,S,E,N` or `&circle=LON,LAT,RADIUS_M`: a full-resolution GeoTIFF.
"""

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from mosaic_assembler.errors import (
    AccessDeniedError,
    ConfigError,
    OutsideLayerError,
    PlanTooLargeError,
)
from mosaic_assembler.serve._cache import TileCache
from mosaic_assembler.serve._cutout import (
    circle_bbox,
    mask_circle,
    parse_bbox,
    parse_circle,
    read_cutout,
    write_geotiff,
)
from mosaic_assembler.serve._grants import Grants
from mosaic_assembler.serve._layers import COG, MOSAIC, Layer

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[1] / "static"
DEFAULT_MAX_CUTOUT_PIXELS = 4096 * 4096
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
_TILE_PATH = re.compile(r"^/(cog|mosaicjson)/([^/]+)/tiles/")


def create_app(
    layers: Mapping[str, Layer],
    grants: Grants | None = None,
    max_cutout_pixels: int = DEFAULT_MAX_CUTOUT_PIXELS,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> FastAPI:
    """The server's app, testable without uvicorn (`fastapi.testclient.TestClient`).

    Args:
        layers: name → layer (see `open_layers`).
        grants: who may read which layer; None: every layer is public.
        max_cutout_pixels: the largest cutout (width x height) served; more is a 413.
        cache_bytes: the tile cache's bound.

    Returns:
        The app; `app.state.tile_cache` is its `TileCache`.
    """
    grants = grants or Grants()
    app = FastAPI(
        title="mosaic-assembler serve", docs_url="/api/docs", openapi_url="/api/openapi.json"
    )
    app.state.tile_cache = TileCache(cache_bytes)
    app.state.layers = dict(layers)
    access = _Access(layers, grants)
    _add_tilers(app, access)
    _add_viewer_api(app, access, max_cutout_pixels)
    _add_cutout(app, access, max_cutout_pixels)
    _add_tile_cache(app, access, app.state.tile_cache)

    @app.get("/", include_in_schema=False)
    def viewer() -> FileResponse:
        return FileResponse(STATIC / "viewer" / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _Access:
    """The layers and who may read them: every route asks here first."""

    def __init__(self, layers: Mapping[str, Layer], grants: Grants):
        self.layers, self.grants = layers, grants

    def require(self, name: str, authorization: str | None, kind: str | None = None) -> Layer:
        """The layer, or the HTTP error (401/403 from the grants, 404 unknown)."""
        layer = self.layers.get(name)
        try:
            self.grants.check(name, authorization)
        except AccessDeniedError as e:
            raise _denied(e) from e
        if layer is None or (kind is not None and layer.kind != kind):
            raise HTTPException(404, f"no layer {name!r}")
        return layer

    def visible(self, request: Request) -> list[dict[str, Any]]:
        """The layers this request may see, described for the viewer."""
        try:
            names = self.grants.visible(self.layers, request.headers.get("authorization"))
        except AccessDeniedError as e:
            raise _denied(e) from e
        return [_describe(self.layers[n]) for n in names]


def _add_tilers(app: FastAPI, access: _Access) -> None:
    """TiTiler's factories, over layer names (never paths) checked against the grants."""
    from cogeo_mosaic.backends import MosaicBackend
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.core.factory import TilerFactory
    from titiler.mosaic.errors import MOSAIC_STATUS_CODES
    from titiler.mosaic.factory import MosaicTilerFactory

    def cog_path(request: Request, layer: Annotated[str, PathParam()]) -> str:
        return str(access.require(layer, request.headers.get("authorization"), COG).path)

    def mosaic_path(request: Request, layer: Annotated[str, PathParam()]) -> str:
        return str(access.require(layer, request.headers.get("authorization"), MOSAIC).path)

    cog = TilerFactory(
        path_dependency=cog_path, router_prefix="/cog/{layer}", add_viewer=False,
        add_preview=False,
    )  # fmt: skip
    app.include_router(cog.router, prefix="/cog/{layer}", tags=["COG layers"])
    mosaic = MosaicTilerFactory(
        backend=MosaicBackend,  # type: ignore[arg-type]  # a function that picks the class
        path_dependency=mosaic_path, router_prefix="/mosaicjson/{layer}", add_viewer=False,
        add_statistics=True,
    )  # fmt: skip
    app.include_router(mosaic.router, prefix="/mosaicjson/{layer}", tags=["split outputs"])
    add_exception_handlers(app, {**DEFAULT_STATUS_CODES, **MOSAIC_STATUS_CODES})


def _add_viewer_api(app: FastAPI, access: _Access, max_cutout_pixels: int) -> None:
    @app.get("/api/layers", tags=["viewer"])
    def list_layers(shown: Annotated[list[dict[str, Any]], Depends(access.visible)]) -> Any:
        """The layers this request may read."""
        return shown

    @app.get("/api/config", tags=["viewer"])
    def viewer_config(shown: Annotated[list[dict[str, Any]], Depends(access.visible)]) -> Any:
        """What the viewer needs: the layers it may show and the cutout limit."""
        return {"layers": shown, "max_cutout_pixels": max_cutout_pixels}


def _add_cutout(app: FastAPI, access: _Access, max_cutout_pixels: int) -> None:
    @app.get("/cutout", tags=["cutouts"], response_class=Response)
    async def cutout(
        request: Request,
        layer: Annotated[str, Query(description="a layer name")],
        bbox: Annotated[str | None, Query(description="W,S,E,N in degrees")] = None,
        circle: Annotated[str | None, Query(description="LON,LAT,RADIUS_M")] = None,
    ) -> Response:
        """A GeoTIFF of the layer's own pixels in a box, or in a circle (masked outside)."""
        lyr = access.require(layer, request.headers.get("authorization"))
        if (bbox is None) == (circle is None):
            raise HTTPException(400, "give one of bbox=W,S,E,N or circle=LON,LAT,RADIUS_M")
        try:
            body = await run_in_threadpool(_cutout_bytes, lyr, bbox, circle, max_cutout_pixels)
        except PlanTooLargeError as e:
            raise HTTPException(413, str(e)) from e
        except OutsideLayerError as e:
            raise HTTPException(404, str(e)) from e
        except ConfigError as e:
            raise HTTPException(400, str(e)) from e
        shape = "bbox" if bbox else "circle"
        return Response(
            body, media_type="image/tiff",
            headers={"Content-Disposition": f'attachment; filename="{layer}_{shape}.tif"'},
        )  # fmt: skip


def _add_tile_cache(app: FastAPI, access: _Access, cache: TileCache) -> None:
    @app.middleware("http")
    async def tile_cache(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        m = _TILE_PATH.match(request.url.path)
        if request.method != "GET" or m is None or m.group(2) not in access.layers:
            return await call_next(request)
        try:  # the grants first: a cached tile is never a way around them
            access.grants.check(m.group(2), request.headers.get("authorization"))
        except AccessDeniedError:
            return await call_next(request)
        key = f"{request.url.path}?{request.url.query}"
        hit = cache.get(key)
        if hit is not None:
            return Response(hit[0], media_type=hit[1], headers={"X-Tile-Cache": "hit"})
        response = await call_next(request)
        if response.status_code != 200:
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        media = response.media_type or response.headers.get("content-type", "")
        cache.put(key, body, media)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(body, status_code=200, headers={**headers, "X-Tile-Cache": "miss"})


def _denied(e: AccessDeniedError) -> HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
    return HTTPException(e.status, str(e), headers=headers)


def _describe(layer: Layer) -> dict[str, Any]:
    d = asdict(layer)
    d.pop("path"), d.pop("files")
    d["base"] = f"/{layer.kind}/{layer.name}"
    return d


def _cutout_bytes(layer: Layer, bbox: str | None, circle: str | None, max_pixels: int) -> bytes:
    if circle is not None:
        lon, lat, radius = parse_circle(circle)
        box = circle_bbox(lon, lat, radius)
    else:
        box = parse_bbox(bbox or "")
    data, mask, profile = read_cutout(layer.files, box, max_pixels)
    if circle is not None:
        mask_circle(data, mask, profile, lon, lat, radius)
    return write_geotiff(data, mask, profile)

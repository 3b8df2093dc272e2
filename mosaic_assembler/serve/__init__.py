"""mosaic_assembler.serve: a tile server and browser viewer over COGs and split outputs.

Dependency order: _layers, _grants, _cache, _cutout <-- _app. TiTiler, FastAPI and uvicorn
come with the `server` extra; they are imported when an app is made, not with this package.
"""

from __future__ import annotations

from mosaic_assembler.errors import AccessDeniedError
from mosaic_assembler.serve._access_log import RedactTokensFilter, redact_tokens
from mosaic_assembler.serve._app import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_MAX_CUTOUT_PIXELS,
    create_app,
)
from mosaic_assembler.serve._cache import TileCache
from mosaic_assembler.serve._grants import Grants, grants_from_dict, load_grants
from mosaic_assembler.serve._layers import Layer, open_layer, open_layers, parse_layer_spec

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_MAX_CUTOUT_PIXELS",
    "AccessDeniedError",
    "Grants",
    "Layer",
    "RedactTokensFilter",
    "TileCache",
    "create_app",
    "grants_from_dict",
    "load_grants",
    "open_layer",
    "open_layers",
    "parse_layer_spec",
    "redact_tokens",
]

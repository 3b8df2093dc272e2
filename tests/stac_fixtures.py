"""A generated STAC collection and the throwaway pgstac stack that serves it.

`StacStack` itself lives in `scripts/stac_stack.py` (stdlib only, also a CLI); this module
loads it by path, generates the collection from conftest's scene generator, and applies the
test policy: a missing PostgreSQL/PostGIS or stack venv skips, except under CI=true where it
fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rasterio.shutil  # noqa: F401 - conftest.write_cog uses rasterio.shutil

ROOT = Path(__file__).resolve().parents[1]


def load_stack_module():
    """scripts/stac_stack.py as a module (cached in sys.modules as `stac_stack`)."""
    if "stac_stack" in sys.modules:
        return sys.modules["stac_stack"]
    spec = importlib.util.spec_from_file_location("stac_stack", ROOT / "scripts" / "stac_stack.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["stac_stack"] = mod
    spec.loader.exec_module(mod)
    return mod


#: id: (crs, center lon/lat, size px, resolution, seed, date, eo:cloud_cover, collar)
#: North items overlap around (5.55, 45.25, 6.45, 45.75); one per season at least.
ITEM_SPECS: dict[str, tuple] = {
    "s1-winter": ("EPSG:32631", (5.75, 45.50), 400, 120.0, 11, "2024-01-15T10:00:00Z", 2.0, True),
    "s2-spring": ("EPSG:32632", (6.15, 45.45), 400, 120.0, 12, "2024-04-10T10:00:00Z", 12.0, True),
    "s3-summer": ("EPSG:4326", (5.95, 45.60), 300, 0.0015, 13, "2024-07-05T10:00:00Z", 0.5, True),
    "s4-autumn": ("EPSG:3857", (6.00, 45.40), 300, 150.0, 14, "2024-10-20T10:00:00Z", 30.0, False),
    "s5-spring": ("EPSG:32631", (5.85, 45.45), 400, 120.0, 15, "2024-05-25T10:00:00Z", 4.0, True),
    "s6-summer": ("EPSG:32632", (6.05, 45.55), 400, 120.0, 16, "2024-08-30T10:00:00Z", 60.0, True),
    "s7-winter": ("EPSG:4326", (5.90, 45.50), 300, 0.0015, 17, "2024-12-03T10:00:00Z", 8.0, True),
    # lacks the "blue" asset: reported in `skipped`
    "s8-noblue": ("EPSG:32631", (5.95, 45.45), 300, 120.0, 18, "2024-06-15T10:00:00Z", 3.0, True),
    # southern hemisphere, July = austral winter
    "south-jul": ("EPSG:4326", (6.00, -45.50), 200, 0.0015, 19, "2024-07-12T10:00:00Z", 1.0, True),
}
ASSETS = ("red", "green", "blue")
COLLECTION = "generated"
AOI_BBOX = (5.55, 45.25, 6.45, 45.75)


@dataclass(frozen=True)
class GeneratedCollection:
    """Items on disk (absolute hrefs) and what the tests need to know about them."""

    dir: Path
    items_path: Path
    features: tuple[dict[str, Any], ...]
    collection: str
    aoi_bbox: tuple[float, float, float, float]

    def feature(self, item_id: str) -> dict[str, Any]:
        return next(f for f in self.features if f["id"] == item_id)

    def usable_north(self) -> list[str]:
        return [i for i in ITEM_SPECS if i.startswith("s") and i != "s8-noblue"]


def make_stac_collection(d: Path) -> GeneratedCollection:
    """≥ 6 overlapping items with single-band red/green/blue COG assets, several dates,
    seasons, cloud covers, one item lacking an asset and one in the southern hemisphere."""
    from conftest import make_items, make_scene

    d.mkdir(parents=True, exist_ok=True)
    scene_paths = []
    for item_id, (crs, center, size, res, seed, *_rest) in ITEM_SPECS.items():
        collar = _rest[-1]
        scene_paths.append(
            make_scene(
                d / f"{item_id}.tif",
                crs,
                center,
                size,
                res,
                seed=seed,
                nodata=0 if collar else None,
                collar=collar,
            )
        )
    raw = make_items(scene_paths, d / "raw-items.json", ASSETS)
    features = json.loads(raw.read_text())["features"]
    out = []
    for f in features:
        _, _, _, _, _, date, cloud, _ = ITEM_SPECS[f["id"]]
        f["collection"] = COLLECTION
        f["stac_extensions"] = ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"]
        f["properties"] = {"datetime": date, "eo:cloud_cover": cloud}
        for a in f["assets"].values():
            a["href"] = str((d / a["href"]).resolve())
        if f["id"] == "s8-noblue":
            del f["assets"]["blue"]
        out.append(f)
    items_path = d / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": out}))
    return GeneratedCollection(d, items_path, tuple(out), COLLECTION, AOI_BBOX)


def start_stack(items_path: Path, collection: str):
    """A started StacStack, or skip (fail under CI=true) when the stack is unavailable."""
    mod = load_stack_module()
    stack = mod.StacStack(
        items_path, collection, server_env={"TITILER_PGSTAC_CACHE_DISABLE": "true"}
    )
    try:
        stack.start()
    except mod.StackUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"STAC stack unavailable under CI: {e}")
        pytest.skip(f"STAC stack unavailable: {e}")
    return stack

"""Where rendered tiles go: one small interface (`TileSink`), a folder and a PMTiles archive.

(Their s3:// versions are in `_s3sinks`; `_run.open_sink` picks one for an OUT.)

Both are resumable. A folder holds `{z}/{x}/{y}.{ext}` files, each written to a temporary
name and renamed, so a file that exists is complete; `tiles.json` beside them records the
options' fingerprint. A PMTiles archive is written once, atomically, at the end: the tiles
rendered before it are kept in a sidecar folder `OUT.pmtiles.parts/` (a folder sink), and a
complete archive of the same fingerprint counts as tiles already there, so a rerun renders
nothing and leaves it untouched, and a rerun with more zooms renders only the new ones.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from mosaic_assembler.errors import OutputError
from mosaic_assembler.render._spec import Tile

logger = logging.getLogger(__name__)

MARKER = "tiles.json"


class TileSink(Protocol):
    """Where a pyramid's tiles are stored."""

    @property
    def path(self) -> Path | str:
        """The pyramid: a local path, or an s3:// URL."""
        ...

    def has(self, tile: Tile) -> bool:
        """True when the tile is already stored (a rerun skips it)."""
        ...

    def put(self, tile: Tile, data: bytes) -> None:
        """Store one tile's image bytes."""
        ...

    def finish(self, meta: dict[str, Any]) -> None:
        """Make the pyramid complete (the archive appears here, for PMTiles)."""
        ...

    def present(self) -> Iterator[Tile]:
        """Every tile stored (for the previewer's index)."""
        ...


class FolderSink:
    """`{z}/{x}/{y}.{ext}` files under a directory, each appearing complete."""

    def __init__(self, path: Path, ext: str, fingerprint: str, overwrite: bool = False):
        self.path, self.ext, self.overwrite = path, ext, overwrite
        self.fingerprint = fingerprint
        self._lock = threading.Lock()
        self._dirs: set[Path] = set()
        marker = path / MARKER
        if path.exists() and not path.is_dir():
            raise OutputError(f"OUT {path} exists and is not a directory")
        if path.is_dir() and not overwrite:
            if marker.is_file():
                old = _read_marker(marker).get("fingerprint")
                if old != fingerprint:
                    raise OutputError(
                        f"{path} holds a pyramid of other options or of an older source; "
                        "rerun with --overwrite to render every tile again"
                    )
            elif any(path.iterdir()):
                raise OutputError(
                    f"{path} is a non-empty directory that holds no pyramid; choose another OUT"
                )
        path.mkdir(parents=True, exist_ok=True)
        if _read_marker(marker).get("fingerprint") != fingerprint:
            _write_atomic(marker, json.dumps({"fingerprint": fingerprint}).encode())

    def tile_path(self, tile: Tile) -> Path:
        """Where a tile's file lives."""
        x, y, z = tile
        return self.path / str(z) / str(x) / f"{y}.{self.ext}"

    def has(self, tile: Tile) -> bool:  # noqa: D102
        return not self.overwrite and self.tile_path(tile).is_file()

    def put(self, tile: Tile, data: bytes) -> None:  # noqa: D102
        dest = self.tile_path(tile)
        if dest.parent not in self._dirs:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._dirs.add(dest.parent)
        _write_atomic(dest, data)

    def finish(self, meta: dict[str, Any]) -> None:  # noqa: D102
        doc = {**meta, "fingerprint": self.fingerprint}
        write_if_changed(self.path / MARKER, json.dumps(doc, indent=1).encode())

    def present(self) -> Iterator[Tile]:  # noqa: D102
        for zdir in self.path.iterdir():
            if not zdir.name.isdigit() or not zdir.is_dir():
                continue
            for xdir in zdir.iterdir():
                if not xdir.name.isdigit():
                    continue
                for f in xdir.glob(f"*.{self.ext}"):
                    if f.stem.isdigit():
                        yield int(xdir.name), int(f.stem), int(zdir.name)


class PMTilesSink:
    """A PMTiles v3 archive, written atomically at the end from a sidecar folder of parts."""

    def __init__(
        self, path: Path, ext: str, tile_type: str, fingerprint: str, overwrite: bool = False
    ):
        self.path, self.tile_type, self.fingerprint = path, tile_type, fingerprint
        self.parts_path = path.with_name(path.name + ".parts")
        if path.is_dir():
            raise OutputError(f"OUT {path} is a directory, not a .pmtiles file")
        if overwrite and self.parts_path.is_dir():
            shutil.rmtree(self.parts_path)
        if not path.parent.is_dir():
            raise OutputError(f"the directory of OUT {path} does not exist")
        self._written = 0
        self._archived: set[int] = set()
        if path.is_file() and not overwrite:  # before the parts folder: refused, none made
            self._archived = self._read_archive_ids(path)
        self.parts = FolderSink(self.parts_path, ext, fingerprint, overwrite)

    def _read_archive_ids(self, path: Path) -> set[int]:
        from pmtiles.reader import MmapSource, Reader, all_tiles
        from pmtiles.tile import zxy_to_tileid

        with path.open("rb") as f:
            try:
                source = MmapSource(f)
                meta = Reader(source).metadata()
            except Exception as e:  # not an archive (a truncated file, another format)
                raise OutputError(f"{path} exists and is no PMTiles archive: {e}") from e
            if meta.get("mosaic_assembler", {}).get("fingerprint") != self.fingerprint:
                raise OutputError(
                    f"{path} holds a pyramid of other options or of an older source; "
                    "rerun with --overwrite to render every tile again"
                )
            return {zxy_to_tileid(z, x, y) for (z, x, y), _ in all_tiles(source)}

    def has(self, tile: Tile) -> bool:  # noqa: D102
        from pmtiles.tile import zxy_to_tileid

        x, y, z = tile
        return zxy_to_tileid(z, x, y) in self._archived or self.parts.has(tile)

    def put(self, tile: Tile, data: bytes) -> None:  # noqa: D102
        self.parts.put(tile, data)
        self._written += 1

    def present(self) -> Iterator[Tile]:  # noqa: D102
        from pmtiles.tile import tileid_to_zxy

        for tid in self._archived:
            z, x, y = tileid_to_zxy(tid)
            yield x, y, z
        yield from self.parts.present()

    def finish(self, meta: dict[str, Any]) -> None:
        """Write the archive (existing tiles + parts) to a temporary file, then rename it.

        Nothing is rewritten when every tile was already in the archive.
        """
        parts = list(self.parts.present())
        if not parts and self.path.is_file():
            shutil.rmtree(self.parts_path, ignore_errors=True)
            return
        from pmtiles.tile import Compression, TileType, zxy_to_tileid
        from pmtiles.writer import Writer

        tiles: dict[int, tuple[str, Any]] = {}
        for x, y, z in parts:
            tiles[zxy_to_tileid(z, x, y)] = ("part", self.parts.tile_path((x, y, z)))
        old = self.path.open("rb") if self.path.is_file() and self._archived else None
        try:
            reader = _archive_reader(old) if old else None
            for tid in self._archived:
                tiles.setdefault(tid, ("archive", None))
            if not tiles:
                raise OutputError("no tile holds data: no archive written")
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            w, s, e, n = meta["bounds"]
            header = {
                "tile_type": TileType[self.tile_type],
                "tile_compression": Compression.NONE,
                "min_lon_e7": int(w * 1e7),
                "min_lat_e7": int(s * 1e7),
                "max_lon_e7": int(e * 1e7),
                "max_lat_e7": int(n * 1e7),
                "center_zoom": meta["center"][2],
                "center_lon_e7": int(meta["center"][0] * 1e7),
                "center_lat_e7": int(meta["center"][1] * 1e7),
            }
            with tmp.open("wb") as f:
                writer = Writer(f)
                for tid in sorted(tiles):
                    kind, p = tiles[tid]
                    data = p.read_bytes() if kind == "part" else reader(tid)  # type: ignore[misc]
                    writer.write_tile(tid, data)
                mine = {"mosaic_assembler": {"fingerprint": self.fingerprint}}
                writer.finalize(header, {**meta, **mine})
            os.replace(tmp, self.path)
        finally:
            if old is not None:
                old.close()
        shutil.rmtree(self.parts_path, ignore_errors=True)


def _archive_reader(f: Any) -> Any:
    """Tile id → bytes of an open archive."""
    from pmtiles.reader import MmapSource, Reader
    from pmtiles.tile import tileid_to_zxy

    reader = Reader(MmapSource(f))

    def get(tid: int) -> bytes:
        z, x, y = tileid_to_zxy(tid)
        data = reader.get(z, x, y)
        if data is None:
            raise OutputError(f"tile {z}/{x}/{y} vanished from the archive being extended")
        return bytes(data)

    return get


def _read_marker(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_if_changed(dest: Path, data: bytes) -> None:
    """Write atomically unless the file already holds these bytes (a rerun touches nothing)."""
    try:
        if dest.read_bytes() == data:
            return
    except OSError:
        pass
    _write_atomic(dest, data)


def _write_atomic(dest: Path, data: bytes) -> None:
    """Write to a temporary name in the same directory, then rename (readers see all or none)."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {dest}: {e}") from e

"""Imported first by the CLI: rio-tiler's readers without the xarray stack.

`rio_tiler.io` imports its `XarrayReader`, which imports xarray and rioxarray when they are
installed (the `[test]` extra brings them, through odc-stac, and so does any data-science
environment), and with them pandas and dask.array: 600 modules, ~1.2 CPU-s and 52 MB of RSS
before the first tile, measured with `python -c "import mosaic_assembler.cli, …"`. No
command reads an xarray dataset (the tile server's factories are titiler.core's and
titiler.mosaic's), so for the rio-tiler import only, xarray and rioxarray are made to look
absent, as rio-tiler's own `try: import xarray / except ImportError` allows. The blockers are
removed right after: a later `import xarray` in the process works (only rio-tiler's
`XarrayReader` of this process is the one of an environment without xarray).

The library (`from mosaic_assembler import assemble`) is left alone: it shares its process
with other code, which may use `XarrayReader`.
"""

from __future__ import annotations

import sys

_SKIPPED = ("xarray", "rioxarray")


def import_rio_tiler_without_xarray() -> None:
    """Import `rio_tiler.io` with xarray and rioxarray looking absent (a no-op once imported)."""
    if "rio_tiler.io" in sys.modules:
        return
    blocked = [name for name in _SKIPPED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # None: "import fails" (importlib)
    try:
        import rio_tiler.io  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


import_rio_tiler_without_xarray()

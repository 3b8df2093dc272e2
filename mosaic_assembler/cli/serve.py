"""`assemble-mosaic serve SRC …`: a tile server and viewer (the `server` extra) on 127.0.0.1."""

from __future__ import annotations

import errno
import importlib.util
import logging
import socket

import click

from mosaic_assembler.cli._common import RunError, setup_logging
from mosaic_assembler.errors import ConfigError

_SERVER_MODULES = ("fastapi", "uvicorn", "titiler.core", "titiler.mosaic")


@click.command("serve")
@click.argument("src", nargs=-1, metavar="SRC [SRC …]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--grants", "grants_file", type=click.Path(dir_okay=False),
    help='JSON {"layers": {LAYER: GRANT}, "tokens": {TOKEN: [GRANT, …]}}: hide layers.',
)  # fmt: skip
@click.option(
    "--max-cutout-pixels", type=click.IntRange(1), default=4096 * 4096, show_default=True,
    help="Largest cutout (width x height); larger asks answer 413.",
)  # fmt: skip
@click.option(
    "--cache-mb", type=click.FloatRange(0), default=64, show_default=True,
    help="Bound of the in-memory tile cache.",
)  # fmt: skip
@click.option("-v", "--verbose", count=True, help="More log (repeatable).")
@click.option("-q", "--quiet", count=True, help="Less log (repeatable).")
def serve_command(
    src: tuple[str, ...], host: str, port: int, grants_file: str | None,
    max_cutout_pixels: int, cache_mb: float, verbose: int, quiet: int,
) -> None:  # fmt: skip
    """Serve COGs and split outputs with a browser viewer at http://HOST:PORT/.

    \b
    SRC is a COG or a split output (a directory with mosaic.json), named after its
    file (or directory), or NAME=PATH.
    \b
    assemble-mosaic serve out.tif
    assemble-mosaic serve rgb=out.tif split_dir --grants grants.json --port 8010
    """
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m.split(".")[0]) is None
               or importlib.util.find_spec(m) is None]  # fmt: skip
    if missing:
        raise RunError(f"serve needs {', '.join(missing)}: pip install 'mosaic-assembler[server]'")
    import uvicorn

    from mosaic_assembler.serve import create_app, load_grants, open_layers

    setup_logging(verbose, quiet)
    try:
        layers = open_layers(list(src))
        grants = load_grants(grants_file, layers) if grants_file else None
    except ConfigError as e:
        raise RunError(str(e)) from e
    sock = _bind(host, port)
    app = create_app(
        layers, grants, max_cutout_pixels=max_cutout_pixels, cache_bytes=int(cache_mb * 2**20)
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"serving {len(layers)} layer(s): {', '.join(layers)} at "
        f"http://{shown}:{sock.getsockname()[1]}/",
        err=True,
    )
    config = uvicorn.Config(app, log_config=_log_config(verbose, quiet), access_log=quiet == 0)
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
        raise RunError(f"{host}:{port} {why}: choose another --port or --host") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _log_config(verbose: int, quiet: int) -> dict:
    """Uvicorn's logging, with `token=` values redacted from the access log."""
    level = logging.getLevelName(max(logging.DEBUG, logging.INFO - 10 * verbose + 10 * quiet))
    fmt = "%(levelname)s: %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "mosaic_assembler.serve.RedactTokensFilter"}},
        "formatters": {"plain": {"format": fmt}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                "formatter": "plain", "filters": ["redact"],
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }  # fmt: skip

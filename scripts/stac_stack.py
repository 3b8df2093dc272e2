#!/usr/bin/env python3
"""A throwaway STAC API + titiler-pgstac stack on 127.0.0.1, for tests, demos and CI.

What it starts, all on free loopback ports, all under one temporary directory that is
removed on exit:

1. PostgreSQL + PostGIS (Debian's `postgresql` and `postgresql-15-postgis-3`): `initdb` in
   the temp dir, then the `postgres` server as a child process. As root, the cluster runs as
   the `postgres` system user (PostgreSQL refuses to run as root). Password auth (a random
   password), fsync off: this is a scratch database.
2. `pypgstac migrate`, then `pypgstac load` of one collection and its items, and
   `pypgstac load_queryables` declaring the items' numeric properties as numbers (without
   that, pgstac sorts e.g. `eo:cloud_cover` as text).
3. stac-fastapi-pgstac (the STAC API, all extensions: query, filter, sort, fields …) and
   titiler-pgstac (`/searches/register`, `/searches/{id}/tiles/…`), each with uvicorn.

The servers run from a separate virtualenv (the *stack venv*): titiler-pgstac 3.2 needs
titiler-core < 2.4 while mosaic-assembler's test environment has titiler.application 2.4,
so the two cannot share one environment. `--install` creates that venv with the pinned
versions below, matching the calling environment's rio-tiler / rasterio / numpy so that
tiles rendered by titiler-pgstac are pixel-identical to the in-process ones.

CLI::

    scripts/stac-stack --install                       # once: create the stack venv
    scripts/stac-stack --items items.json --collection demo   # up until Ctrl-C / SIGTERM
    scripts/stac-stack --demo /tmp/demo                # generate the demo sample and serve it

Python (tests import this file; it needs only the standard library)::

    with StacStack(items="items.json", collection="demo") as stack:
        stack.stac_url, stack.titiler_url, stack.dsn

Stack venv lookup (first that exists): `python=` / `--python`, `$MOSAIC_STAC_STACK_PYTHON`,
`$MOSAIC_STAC_STACK_VENV/bin/python`, `${XDG_CACHE_HOME:-~/.cache}/mosaic-assembler/
stac-stack-venv/bin/python`, then the current interpreter if it can import all three servers.
PostgreSQL binaries: `pg_bin=` / `--pg-bin`, `$PG_BIN`, the newest `/usr/lib/postgresql/*/bin`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: Server-side packages, pinned together (verified to install and pass `pip check` together
#: on Python 3.11 with rio-tiler 9.4.12 / FastAPI 0.165 / pydantic 2.14).
STACK_REQUIREMENTS = (
    "pypgstac[psycopg]==0.10.0",
    "stac-fastapi-pgstac==7.2.0",
    "titiler-pgstac[psycopg-binary]==3.2.0",
    "uvicorn==0.54.0",
)
#: Packages whose versions the stack venv copies from the calling environment (pixel identity).
MATCH_VERSIONS = ("rio-tiler", "rasterio", "numpy")

DEFAULT_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "mosaic-assembler"
    / "stac-stack-venv"
)
SERVER_MODULES = ("pypgstac", "stac_fastapi.pgstac", "titiler.pgstac")


class StackUnavailable(RuntimeError):
    """Something the stack needs is not installed (PostgreSQL, PostGIS, the stack venv)."""


class StackError(RuntimeError):
    """A component of the stack failed to start or to load the data."""


# --------------------------------------------------------------------------- discovery


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_import(python: str, modules: Iterable[str]) -> bool:
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    try:
        r = subprocess.run([python, "-c", code, *modules], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def find_stack_python(python: str | None = None) -> str:
    """The interpreter that runs pypgstac, stac-fastapi-pgstac and titiler-pgstac.

    Raises:
        StackUnavailable: none found (run `scripts/stac-stack --install`).
    """
    explicit: tuple[str, str] | None = None
    if python:
        explicit = (python, "python=")
    elif os.environ.get("MOSAIC_STAC_STACK_PYTHON"):
        explicit = (os.environ["MOSAIC_STAC_STACK_PYTHON"], "$MOSAIC_STAC_STACK_PYTHON")
    elif os.environ.get("MOSAIC_STAC_STACK_VENV"):
        explicit = (
            str(Path(os.environ["MOSAIC_STAC_STACK_VENV"]) / "bin" / "python"),
            "$MOSAIC_STAC_STACK_VENV",
        )
    if explicit is not None:
        cand, why = explicit
        if not Path(cand).exists() and shutil.which(cand) is None:
            raise StackUnavailable(
                f"{cand} ({why}) does not exist; "
                "create the stack venv with scripts/stac-stack --install"
            )
        if not _can_import(cand, SERVER_MODULES):
            raise StackUnavailable(
                f"{cand} ({why}) cannot import {', '.join(SERVER_MODULES)}; "
                "run scripts/stac-stack --install"
            )
        return cand
    default = DEFAULT_VENV / "bin" / "python"
    if default.exists() and _can_import(str(default), SERVER_MODULES):
        return str(default)
    if _can_import(sys.executable, SERVER_MODULES):
        return sys.executable
    raise StackUnavailable(
        f"no stack venv with {', '.join(SERVER_MODULES)} (looked for {DEFAULT_VENV}); "
        "create it with: scripts/stac-stack --install"
    )


def find_pg_bin(pg_bin: str | None = None) -> Path:
    """The PostgreSQL server binaries directory (initdb, postgres, pg_isready) with PostGIS.

    Raises:
        StackUnavailable: no PostgreSQL server binaries, or no PostGIS for them.
    """
    explicit = pg_bin or os.environ.get("PG_BIN")
    if explicit:
        candidates = [explicit]
    else:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            reverse=True,
            key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        )
    for cand in candidates:
        d = Path(cand)
        if all((d / b).exists() for b in ("initdb", "postgres", "pg_isready")):
            share = _pg_sharedir(d)
            if share is not None and not (share / "extension" / "postgis.control").exists():
                raise StackUnavailable(
                    f"PostgreSQL in {d} has no PostGIS ({share}/extension/postgis.control "
                    f"missing): apt-get install postgresql-{d.parent.name}-postgis-3"
                )
            return d
    raise StackUnavailable(
        "PostgreSQL server binaries not found (initdb/postgres under /usr/lib/postgresql/*/bin"
        " or $PG_BIN): apt-get install postgresql postgresql-15-postgis-3"
    )


def _pg_sharedir(bindir: Path) -> Path | None:
    cfg = bindir / "pg_config"
    if cfg.exists():
        r = subprocess.run([str(cfg), "--sharedir"], capture_output=True, text=True)
        if r.returncode == 0:
            return Path(r.stdout.strip())
    version = bindir.parent.name
    share = Path("/usr/share/postgresql") / version
    return share if share.is_dir() else None


def install_venv(
    venv: str | Path = DEFAULT_VENV, python: str | None = None, quiet: bool = True
) -> str:
    """Create (or update) the stack venv with STACK_REQUIREMENTS; returns its python.

    rio-tiler, rasterio and numpy are pinned to the versions of the environment that runs
    this function (when it has them), so both sides of a pixel comparison read alike.
    """
    venv = Path(venv)
    base = python or (sys.executable if not _in_venv_of(venv) else "python3")
    if not (venv / "bin" / "python").exists():
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    reqs = list(STACK_REQUIREMENTS)
    from importlib import metadata

    for name in MATCH_VERSIONS:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    q = ["--quiet"] if quiet else []
    subprocess.run([py, "-m", "pip", "install", *q, "--upgrade", "pip"], check=True)
    subprocess.run([py, "-m", "pip", "install", *q, *reqs], check=True)
    subprocess.run([py, "-m", "pip", "check"], check=True)
    return py


def _in_venv_of(venv: Path) -> bool:
    try:
        return Path(sys.prefix).resolve() == venv.resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------- data


def _read_items(items: str | Path | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Items from an ItemCollection/FeatureCollection/Item JSON, an ndjson file, or dicts.

    Relative asset hrefs are made absolute against the file's directory.
    """
    if isinstance(items, (str, Path)):
        path = Path(items)
        text = path.read_text()
        try:
            doc = json.loads(text)
            if isinstance(doc, dict) and doc.get("type") == "Feature":
                feats = [doc]
            elif isinstance(doc, dict):
                feats = list(doc.get("features") or [])
            else:
                feats = list(doc)
        except json.JSONDecodeError:
            feats = [json.loads(line) for line in text.splitlines() if line.strip()]
        base = path.resolve().parent
        out = []
        for f in feats:
            f = json.loads(json.dumps(f))
            for a in (f.get("assets") or {}).values():
                href = a.get("href", "")
                if href and "://" not in href and not href.startswith(("/", "/vsi")):
                    a["href"] = str((base / href).resolve())
                elif href.startswith("file://"):
                    a["href"] = urlparse(href).path
            out.append(f)
        return out
    return [json.loads(json.dumps(dict(f))) for f in items]


def make_collection(
    collection_id: str, items: list[dict[str, Any]], description: str = ""
) -> dict[str, Any]:
    """A minimal valid STAC Collection whose extent covers `items`."""
    bboxes = [i["bbox"] for i in items if i.get("bbox")]
    if bboxes:
        bbox = [
            min(b[0] for b in bboxes),
            min(b[1] for b in bboxes),
            max(b[-2] for b in bboxes),
            max(b[-1] for b in bboxes),
        ]
    else:
        bbox = [-180.0, -90.0, 180.0, 90.0]
    dts = sorted(
        str(
            (i.get("properties") or {}).get("datetime")
            or (i.get("properties") or {}).get("start_datetime")
        )
        for i in items
        if (i.get("properties") or {}).get("datetime")
        or (i.get("properties") or {}).get("start_datetime")
    )
    interval = [dts[0], dts[-1]] if dts else [None, None]
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": description or f"{collection_id} (loaded by scripts/stac_stack.py)",
        "license": "proprietary",
        "links": [],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
    }


def numeric_queryables(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A queryables schema declaring every numeric item property as a number (or integer).

    pgstac compares and sorts a property without a queryable definition as *text* (sortby
    eo:cloud_cover would put 12 before 2); declaring the type makes it numeric.
    """
    kinds: dict[str, set[str]] = {}
    for it in items:
        for k, v in (it.get("properties") or {}).items():
            if isinstance(v, bool) or v is None:
                kinds.setdefault(k, set()).add("other")
            elif isinstance(v, int):
                kinds.setdefault(k, set()).add("integer")
            elif isinstance(v, float):
                kinds.setdefault(k, set()).add("number")
            else:
                kinds.setdefault(k, set()).add("other")
    props = {
        k: {"type": "integer" if ks == {"integer"} else "number"}
        for k, ks in sorted(kinds.items())
        if ks and ks <= {"integer", "number"}
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": props,
    }


# --------------------------------------------------------------------------- the stack


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class _Proc:
    """A child process with its log file."""

    def __init__(
        self, name: str, args: list[str], log: Path, env: dict[str, str], user: str | None = None
    ):
        self.name = name
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs["user"] = user
        self.proc = subprocess.Popen(
            args,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


class StacStack:
    """PostgreSQL/PostGIS + pgstac + stac-fastapi-pgstac + titiler-pgstac on 127.0.0.1.

    Args:
        items: the items to load: a JSON file (ItemCollection, FeatureCollection, Item),
            an ndjson file, or a list of item dicts. Relative asset hrefs are made absolute.
        collection: a collection id (a minimal collection covering the items is made), a
            Collection dict, or a Collection JSON file. Every item's `collection` is set to
            its id.
        python: the stack venv's interpreter (see module doc for the default lookup).
        pg_bin: PostgreSQL server binaries directory.
        stac_api / titiler: start stac-fastapi-pgstac / titiler-pgstac.
        server_env: extra environment for both servers (e.g. TITILER_PGSTAC_CACHE_DISABLE).
        keep: keep the temp dir (logs, database) after `stop()`.
        startup_timeout: seconds allowed for each server to answer.

    Attributes (after `start()`):
        stac_url, titiler_url, dsn, collection_id, item_ids, workdir.

    Raises (from `start()`):
        StackUnavailable: a binary, PostGIS or the stack venv is missing.
        StackError: a component failed; the message holds the tail of its log.
    """

    def __init__(
        self,
        items: str | Path | Iterable[Mapping[str, Any]] | None = None,
        collection: str | Mapping[str, Any] | Path = "demo",
        *,
        python: str | None = None,
        pg_bin: str | None = None,
        stac_api: bool = True,
        titiler: bool = True,
        server_env: Mapping[str, str] | None = None,
        keep: bool = False,
        startup_timeout: float = 120.0,
        quiet: bool = True,
    ):
        self._items_arg = items
        self._collection_arg = collection
        self._python_arg = python
        self._pg_bin_arg = pg_bin
        self.want_stac_api = stac_api
        self.want_titiler = titiler
        self.server_env = dict(server_env or {})
        self.keep = keep
        self.startup_timeout = startup_timeout
        self.quiet = quiet
        self.workdir: Path | None = None
        self.stac_url: str | None = None
        self.titiler_url: str | None = None
        self.dsn: str | None = None
        self.collection_id: str | None = None
        self.item_ids: list[str] = []
        self.timings: dict[str, float] = {}
        self._procs: list[_Proc] = []
        self._postgres: _Proc | None = None
        self._watchdog: subprocess.Popen | None = None
        self._stopped = True
        self._lock = threading.Lock()

    # -- context manager
    def __enter__(self) -> StacStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def _timed(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.monotonic() - t0, 2)
        self._log(f"stac-stack: {name} {self.timings[name]:.1f} s")

    def start(self) -> StacStack:
        """Start everything; on any failure, stop what was started and raise."""
        self.python = find_stack_python(self._python_arg)
        self.pg_bin = find_pg_bin(self._pg_bin_arg)
        self._stopped = False
        atexit.register(self.stop)
        # a separate session: survives the Ctrl-C sent to our process group, and cleans up
        # if this process dies without calling stop()
        self._watchdog = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--watchdog"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        t_all = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="stac-stack-"))
        if not self.keep:
            self._watch(f"dir {self.workdir}")
        user = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise StackUnavailable(
                    "running as root needs a 'postgres' system user for the cluster "
                    "(the Debian postgresql package creates it)"
                ) from e
            user = "postgres"
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
        self._pg_user = user
        password = secrets.token_hex(16)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(password + "\n")
        if user:
            os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
        pwfile.chmod(0o600)
        data = self.workdir / "data"
        sock = self.workdir / "sock"
        sock.mkdir()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(sock, pw.pw_uid, pw.pw_gid)
        t0 = time.monotonic()
        r = subprocess.run(
            [
                str(self.pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            user=user,
            cwd=self.workdir,
        )
        pwfile.unlink()
        if r.returncode != 0:
            raise StackError(f"initdb failed: {(r.stderr or r.stdout).strip()[-800:]}")
        self._timed("initdb", t0)

        t0 = time.monotonic()
        self.pg_port = free_port()
        env = dict(os.environ)
        pglog = self.workdir / "postgres.log"
        if user:
            pglog.touch()
            os.chown(pglog, pwd.getpwnam(user).pw_uid, -1)
        self._postgres = self._track(
            _Proc(
                "postgres",
                [
                    str(self.pg_bin / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.pg_port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={sock}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=100",
                    "-c",
                    "shared_buffers=64MB",
                ],
                pglog,
                env,
                user=user,
            ),
            signal.SIGINT,
        )
        deadline = time.monotonic() + 60
        while True:
            if not self._postgres.alive():
                raise StackError(f"postgres exited at start:\n{_tail(pglog)}")
            ready = subprocess.run(
                [
                    str(self.pg_bin / "pg_isready"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.pg_port),
                    "-U",
                    "postgres",
                    "-q",
                ]
            )
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise StackError(f"postgres did not accept connections:\n{_tail(pglog)}")
            time.sleep(0.2)
        self.password = password
        self.dsn = f"postgresql://postgres:{password}@127.0.0.1:{self.pg_port}/postgres"
        self._timed("postgres start", t0)

        t0 = time.monotonic()
        self._pypgstac("migrate")
        self._timed("pypgstac migrate", t0)

        if self._items_arg is not None:
            t0 = time.monotonic()
            self.load(self._items_arg, self._collection_arg)
            self._timed("load", t0)

        t0 = time.monotonic()
        senv = dict(os.environ)
        for k in list(senv):  # our own test settings must not leak into the servers
            if k.startswith(("PG", "POSTGRES_", "DATABASE_URL")):
                del senv[k]
        senv.update(
            PGUSER="postgres",
            PGPASSWORD=password,
            PGHOST="127.0.0.1",
            PGPORT=str(self.pg_port),
            PGDATABASE="postgres",
        )
        senv.setdefault("STAC_FASTAPI_TITLE", "stac-stack")
        senv.setdefault("STAC_FASTAPI_DESCRIPTION", "throwaway STAC API (scripts/stac_stack.py)")
        senv.setdefault("STAC_FASTAPI_VERSION", "0")
        senv.setdefault("STAC_FASTAPI_LANDING_ID", "stac-stack")
        senv.setdefault("GDAL_CACHEMAX", "128")
        senv.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
        senv.update(self.server_env)
        waits = []
        if self.want_stac_api:
            port = free_port()
            p = self._uvicorn(
                "stac-fastapi-pgstac", "stac_fastapi.pgstac.app:create_app", port, senv, "--factory"
            )
            self.stac_url = f"http://127.0.0.1:{port}"
            waits.append((p, f"{self.stac_url}/_mgmt/ping"))
        if self.want_titiler:
            port = free_port()
            p = self._uvicorn("titiler-pgstac", "titiler.pgstac.main:app", port, senv)
            self.titiler_url = f"http://127.0.0.1:{port}"
            waits.append((p, f"{self.titiler_url}/healthz"))
        for p, url in waits:
            self._wait_http(p, url)
        self._timed("servers start", t0)
        self._timed("total", t_all)

    def _uvicorn(self, name: str, app: str, port: int, env: dict[str, str], *extra: str) -> _Proc:
        assert self.workdir is not None
        p = _Proc(
            name,
            [
                self.python,
                "-m",
                "uvicorn",
                app,
                *extra,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            self.workdir / f"{name}.log",
            env,
        )
        self._procs.append(p)
        return self._track(p, signal.SIGTERM)

    def _watch(self, line: str) -> None:
        w = getattr(self, "_watchdog", None)
        if w is not None and w.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                w.stdin.write(line + "\n")
                w.stdin.flush()

    def _track(self, p: _Proc, sig: int) -> _Proc:
        self._watch(f"pid {p.proc.pid} {int(sig)}")
        return p

    def _wait_http(self, p: _Proc, url: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not p.alive():
                raise StackError(
                    f"{p.name} exited with {p.proc.returncode} at start:\n{_tail(p.log)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise StackError(
            f"{p.name} did not answer {url} within {self.startup_timeout} s:\n{_tail(p.log)}"
        )

    def _pypgstac(self, *args: str) -> str:
        assert self.dsn is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        r = subprocess.run(
            [self.python, "-m", "pypgstac.pypgstac", *args, "--dsn", self.dsn],
            capture_output=True,
            text=True,
            env=env,
        )
        if r.returncode != 0:
            out = (r.stderr or r.stdout).strip().splitlines()
            raise StackError(f"pypgstac {args[0]} failed: " + "\n".join(out[-15:]))
        return r.stdout

    def load(
        self,
        items: str | Path | Iterable[Mapping[str, Any]],
        collection: str | Mapping[str, Any] | Path = "demo",
    ) -> list[str]:
        """Load (insert) a collection and its items; returns the item ids.

        The collection is inserted if it does not exist yet (`insert_ignore`).
        """
        assert self.workdir is not None
        feats = _read_items(items)
        if isinstance(collection, Path) or (
            isinstance(collection, str)
            and collection.endswith(".json")
            and Path(collection).exists()
        ):
            coll = json.loads(Path(collection).read_text())
        elif isinstance(collection, Mapping):
            coll = dict(collection)
        else:
            coll = make_collection(str(collection), feats)
        cid = coll["id"]
        for f in feats:
            f["collection"] = cid
            f.setdefault("stac_version", "1.0.0")
            f.setdefault("links", [])
        n = len(list(self.workdir.glob("load-*.json")))
        cpath = self.workdir / f"load-{n}-collection.json"
        cpath.write_text(json.dumps(coll))
        ipath = self.workdir / f"load-{n}-items.ndjson"
        ipath.write_text("".join(json.dumps(f) + "\n" for f in feats))
        self._pypgstac("load", "collections", str(cpath), "--method", "insert_ignore")
        if feats:
            self._pypgstac("load", "items", str(ipath), "--method", "insert")
            queryables = numeric_queryables(feats)
            if queryables["properties"]:
                qpath = self.workdir / f"load-{n}-queryables.json"
                qpath.write_text(json.dumps(queryables))
                self._pypgstac("load_queryables", str(qpath))
        self.collection_id = cid
        ids = [str(f["id"]) for f in feats]
        self.item_ids += ids
        return ids

    def logs(self) -> dict[str, str]:
        """Tails of the component logs (for failure messages)."""
        if self.workdir is None:
            return {}
        return {p.name: _tail(p.log, 40) for p in self._procs} | (
            {"postgres": _tail(self._postgres.log, 40)} if self._postgres else {}
        )

    def stop(self) -> None:
        """Stop the servers and PostgreSQL, remove the temp dir (unless keep). Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for p in reversed(self._procs):
            p.stop(signal.SIGTERM, 10)
        self._procs.clear()
        if self._postgres is not None:
            # SIGINT: "fast" shutdown (roll back, disconnect clients, exit)
            self._postgres.stop(signal.SIGINT, 20)
            self._postgres = None
        if self.workdir is not None and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        w = getattr(self, "_watchdog", None)
        if w is not None:
            self._watch("done")
            with contextlib.suppress(OSError, ValueError):
                w.stdin.close()  # type: ignore[union-attr]
            try:
                w.wait(5)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
            self._watchdog = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)


# --------------------------------------------------------------------------- watchdog


def _watchdog_main() -> int:
    """Cleans up after a parent that died without stopping its stack (SIGKILL, crash).

    Reads lines from stdin: `pid PID SIGNAL`, `dir PATH`, `done`. On `done` it exits; on
    end-of-file without `done` (the parent is gone) it signals the listed processes (then
    SIGKILL after 15 s) and removes the listed directories.
    """
    pids: list[tuple[int, int]] = []
    dirs: list[str] = []
    for line in sys.stdin:
        kind, _, arg = line.strip().partition(" ")
        if kind == "done":
            return 0
        if kind == "pid":
            pid, sig = arg.split()
            pids.append((int(pid), int(sig)))
        elif kind == "dir":
            dirs.append(arg)
    for pid, sig in reversed(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline = time.monotonic() + 15
    for pid, _ in pids:
        while True:
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------- CLI


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="stac-stack",
        description="Throwaway PostgreSQL/PostGIS + pgstac + stac-fastapi-pgstac + "
        "titiler-pgstac on 127.0.0.1 (stays up until Ctrl-C or SIGTERM).",
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument(
        "--items",
        help="STAC ItemCollection/FeatureCollection JSON or ndjson "
        "(relative hrefs resolve against its directory)",
    )
    src.add_argument(
        "--demo",
        metavar="DIR",
        help="generate mosaic_assembler's demo sample into DIR and load its items",
    )
    ap.add_argument(
        "--collection",
        default="demo",
        help="collection id, or a Collection JSON file (default: demo)",
    )
    ap.add_argument("--python", help="the stack venv's python (default: see --help-venv)")
    ap.add_argument(
        "--pg-bin",
        help="PostgreSQL server binaries dir (default: newest /usr/lib/postgresql/*/bin)",
    )
    ap.add_argument("--no-titiler", action="store_true", help="do not start titiler-pgstac")
    ap.add_argument("--no-stac-api", action="store_true", help="do not start stac-fastapi-pgstac")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument(
        "--install",
        nargs="?",
        const=str(DEFAULT_VENV),
        metavar="VENV",
        help=f"create/update the stack venv (default {DEFAULT_VENV}) and exit",
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="report whether PostgreSQL/PostGIS and the stack venv are found",
    )
    ap.add_argument(
        "--json", action="store_true", help="print the URLs as one JSON line instead of text"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--watchdog"]:
        return _watchdog_main()
    args = _parse(argv)
    if args.install:
        py = install_venv(args.install, quiet=False)
        print(f"stack venv ready: {py}")
        return 0
    if args.check:
        ok = True
        for what, fn in (
            ("PostgreSQL", lambda: str(find_pg_bin(args.pg_bin))),
            ("stack python", lambda: find_stack_python(args.python)),
        ):
            try:
                print(f"{what}: {fn()}")
            except StackUnavailable as e:
                ok = False
                print(f"{what}: MISSING: {e}")
        return 0 if ok else 1
    items: Any = args.items
    if args.demo:
        from mosaic_assembler.demo_data import make_demo_sample

        sample = make_demo_sample(args.demo)
        items = sample.items_path
        print(
            f"demo sample written to {sample.root} (bbox {sample.bbox}, zoom {sample.zoom})",
            flush=True,
        )
    if items is None:
        print("stac-stack: no --items/--demo: starting with an empty catalogue", file=sys.stderr)

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    stack = StacStack(
        items,
        args.collection,
        python=args.python,
        pg_bin=args.pg_bin,
        stac_api=not args.no_stac_api,
        titiler=not args.no_titiler,
        keep=args.keep,
        quiet=False,
    )
    try:
        stack.start()
    except (StackUnavailable, StackError) as e:
        print(f"stac-stack: {e}", file=sys.stderr)
        return 2
    try:
        info = {
            "stac_api": stack.stac_url,
            "titiler_pgstac": stack.titiler_url,
            "dsn": stack.dsn,
            "collection": stack.collection_id,
            "items": len(stack.item_ids),
            "workdir": str(stack.workdir),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(
                f"STAC API:        {stack.stac_url}\n"
                f"titiler-pgstac:  {stack.titiler_url}\n"
                f"PostgreSQL:      {stack.dsn}\n"
                f"collection:      {stack.collection_id} ({len(stack.item_ids)} items)\n"
                f"logs:            {stack.workdir}\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
        while True:
            for p in [*stack._procs, stack._postgres]:
                if p is not None and not p.alive():
                    print(
                        f"stac-stack: {p.name} exited ({p.proc.returncode}):\n{_tail(p.log)}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())

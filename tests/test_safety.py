"""Data safety: the tool deletes only what it created (issue 11 §1, §5).

`--restart` and the cleanup after success against directories holding user files, symlinks out
of the run directory, `.` and a home-like directory; stale partials of a killed finalize; split
outputs replaced with `--overwrite`; `--co` checked before anything is read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rio_cogeo.cogeo import cog_validate

from mosaic_assembler import assemble
from mosaic_assembler.errors import ConfigError, OutputError

ZOOM = 9


def _args(scenes, out, *extra):
    return [
        "--bbox",
        *map(str, scenes.bbox),
        "--zoom",
        str(ZOOM),
        "--mosaicjson",
        str(scenes.mosaicjson),
        "-q",
        *extra,
        str(out),
    ]


def run_cli(args, cwd=None, env=None):
    """The real entry point in a subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-c", "from mosaic_assembler.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def _tree(root: Path) -> dict[str, str]:
    """Every name under root (symlinks not followed) → its content or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = p.read_text()
            else:
                out[rel] = "<dir>"
    return out


def _user_files(d: Path) -> None:
    (d / "sub").mkdir(parents=True)
    (d / "thesis.txt").write_text("precious")
    (d / "sub" / "notes.txt").write_text("also precious")


def _refused(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
    return lines[0]


def test_restart_refuses_a_directory_that_is_not_a_run_directory(scenes, tmp_path):
    user = tmp_path / "u"
    _user_files(user)
    before = _tree(user)
    out = tmp_path / "o.tif"
    for extra in (["--restart"], []):
        line = _refused(run_cli(_args(scenes, out, "--run-dir", str(user), *extra)))
        assert "--restart" not in line and "not a run directory" in line
        assert _tree(user) == before and not out.exists()


def test_restart_refuses_the_current_directory(scenes, tmp_path):
    here = tmp_path / "here"
    _user_files(here)
    before = _tree(here)
    _refused(run_cli(_args(scenes, "o.tif", "--run-dir", ".", "--restart"), cwd=here))
    assert _tree(here) == before


def test_restart_refuses_a_run_json_of_someone_else(scenes, tmp_path):
    user = tmp_path / "u"
    _user_files(user)
    (user / "run.json").write_text(json.dumps({"hash": "x", "mine": True}))
    before = _tree(user)
    _refused(run_cli(_args(scenes, tmp_path / "o.tif", "--run-dir", str(user), "--restart")))
    assert _tree(user) == before


def test_home_like_run_dir(scenes, tmp_path):
    home = tmp_path / "home"
    _user_files(home)
    before = _tree(home)
    env = {"HOME": str(home)}
    out = tmp_path / "o.tif"
    _refused(run_cli(_args(scenes, out, "--run-dir", str(home), "--restart"), env=env))
    assert _tree(home) == before
    # a run directory created under HOME is removed after success, HOME and its files stay
    r = run_cli(_args(scenes, out, "--run-dir", str(home / "runs" / "x")), env=env)
    assert r.returncode == 0, r.stderr
    assert _tree(home) == before and cog_validate(str(out), quiet=True)[0]


def test_restart_and_cleanup_remove_only_the_tools_files(scenes, tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    out = tmp_path / "o.tif"
    r = run_cli(_args(scenes, out, "--run-dir", str(run), "--keep-run-dir"))
    assert r.returncode == 0, r.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["format"] == "mosaic-assembler-run/1" and info["created_dirs"] == 1
    # the user adds files, and symlinks out of the run directory to files named like ours
    (outside / "chunks").mkdir(parents=True)
    for name in ("manifest.jsonl", "run.json", "chunks/r0-c0.tif", "keep.txt"):
        (outside / name).write_text("user's")
    (run / "mine.txt").write_text("user's")
    (run / "escape").symlink_to(outside, target_is_directory=True)
    (run / "chunks" / "r9-c9.tif").unlink(missing_ok=True)
    (run / "chunks" / "r9-c9.tif").symlink_to(outside / "chunks" / "r0-c0.tif")
    outside_before = _tree(outside)
    r = run_cli(_args(scenes, out, "--run-dir", str(run), "--restart", "--overwrite"))
    assert r.returncode == 0, r.stderr
    assert _tree(outside) == outside_before
    assert sorted(_tree(run)) == ["chunks", "chunks/r9-c9.tif", "escape", "mine.txt"]
    assert (run / "mine.txt").read_text() == "user's"


def test_an_existing_empty_run_dir_is_kept(scenes, tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    r = run_cli(_args(scenes, tmp_path / "o.tif", "--run-dir", str(run)))
    assert r.returncode == 0, r.stderr
    assert run.is_dir() and not any(run.iterdir())


def test_created_parents_are_removed_existing_ones_kept(scenes, tmp_path):
    r = run_cli(_args(scenes, "o.tif", "--run-dir", "a/b/c"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "a").exists()
    (tmp_path / "p").mkdir()
    r = run_cli(_args(scenes, "o2.tif", "--run-dir", "p/b/c"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p").is_dir() and not any((tmp_path / "p").iterdir())


_KILL_IN_FINALIZE = """
import os, signal, sys
import mosaic_assembler.writer as w
mod = getattr(w, "_cog", w)
def killed(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
mod.cog_validate = killed
from mosaic_assembler.cli import main
sys.argv = ["assemble-mosaic", *sys.argv[1:]]
main()
"""


def test_a_killed_finalize_leaves_no_stale_partial(scenes, tmp_path):
    out = tmp_path / "o.tif"
    r = subprocess.run(
        [sys.executable, "-c", _KILL_IN_FINALIZE, *_args(scenes, out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == -9, r.stderr
    partials = list(tmp_path.glob(".o.tif.partial-*"))
    assert len(partials) == 1 and not out.exists()
    # a partial of another live process, and a foreign directory with the same prefix, stay
    foreign = tmp_path / ".o.tif.partial-user"
    foreign.mkdir()
    (foreign / "x").write_text("user's")
    r = run_cli(_args(scenes, out))
    assert r.returncode == 0, r.stderr
    assert cog_validate(str(out), quiet=True)[0]
    assert sorted(tmp_path.glob(".o.tif.partial-*")) == [foreign]
    assert (foreign / "x").read_text() == "user's"


def _split(scenes, out, **kw):
    return assemble(
        out,
        bbox=scenes.bbox,
        zoom=10,
        tilesize=256,
        mosaicjson=scenes.mosaicjson,
        split_zoom=8,
        progress=False,
        **kw,
    )


def test_split_output_is_replaced_with_overwrite(scenes, tmp_path):
    out = tmp_path / "split"
    first = _split(scenes, out)
    names = sorted(p.name for p in out.iterdir())
    second = _split(scenes, out, overwrite=True, pixel_selection="median")
    assert sorted(p.name for p in out.iterdir()) == names
    assert second.outputs == first.outputs
    assert all(cog_validate(str(p), quiet=True)[0] for p in second.outputs)
    assert not list(tmp_path.glob(".split.partial-*"))
    # the CLI accepts a directory OUTPUT with --split-zoom --overwrite
    r = run_cli(_args(scenes, out, "--split-zoom", "8", "--overwrite"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == names


def test_split_overwrite_refuses_a_directory_that_is_not_a_split_output(scenes, tmp_path):
    user = tmp_path / "photos"
    _user_files(user)
    before = _tree(user)
    with pytest.raises(OutputError, match="not a split output"):
        _split(scenes, user, overwrite=True)
    assert _tree(user) == before


@pytest.mark.parametrize("co", ["COMPRESS=NOPE", "BLOCKSIZE=7", "BLOCKSIZE=200", "NOPE=1"])
def test_bad_creation_options_are_refused_before_reading(scenes, tmp_path, co):
    out = tmp_path / "o.tif"
    line = _refused(run_cli(_args(scenes, out, "--co", co)))
    assert co.split("=")[0] in line
    assert not out.exists() and not Path(f"{out}.run").exists()
    name, value = co.split("=")
    with pytest.raises(ConfigError):
        assemble(
            out,
            bbox=scenes.bbox,
            zoom=ZOOM,
            mosaicjson=scenes.mosaicjson,
            creation_options={name: value},
        )


def test_good_creation_options_are_accepted():
    import pyogrio  # noqa: F401 - bundles another GDAL build (its COG driver lacks ZSTD)

    from mosaic_assembler.writer import COGOptions

    opts = {"compress": "zstd", "LEVEL": "9", "PREDICTOR": "2", "BLOCKSIZE": "256"}
    COGOptions(creation_options=opts)

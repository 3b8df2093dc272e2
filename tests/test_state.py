"""RunState: the run directory's marker, restart and cleanup touch only the tool's own files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mosaic_assembler.errors import StateMismatchError
from mosaic_assembler.state import RUN_FORMAT, RunState

SUMMARY = {"output": "o.tif", "tiles": 4, "chunks": 1}


def _own_files(run):
    (run / "chunks" / "r0-c0.tif").write_bytes(b"chunk")
    (run / "chunks" / "r0-c1.partial-123.tif").write_bytes(b"partial")
    (run / "manifest.jsonl").write_text("{}\n")
    (run / "search.json").write_text("{}")
    (run / "search.items.json").write_text("{}")


def test_open_writes_a_tagged_marker(tmp_path):
    run = tmp_path / "a" / "b" / "run"
    RunState.open(run, "h1", SUMMARY)
    info = json.loads((run / "run.json").read_text())
    assert info["format"] == RUN_FORMAT and info["hash"] == "h1"
    assert info["created_dirs"] == 3 and info["output"] == "o.tif"


@pytest.mark.parametrize("restart", [False, True])
def test_a_user_directory_is_refused_and_untouched(tmp_path, restart):
    user = tmp_path / "u"
    user.mkdir()
    (user / "thesis.txt").write_text("precious")
    with pytest.raises(StateMismatchError) as e:
        RunState.open(user, "h", SUMMARY, restart=restart)
    assert "restart" not in str(e.value)
    assert sorted(p.name for p in user.iterdir()) == ["thesis.txt"]


@pytest.mark.parametrize("marker", ['{"hash": "h"}', "not json", '["x"]'])
def test_a_run_json_without_our_tag_is_refused(tmp_path, marker):
    user = tmp_path / "u"
    user.mkdir()
    (user / "run.json").write_text(marker)
    with pytest.raises(StateMismatchError, match="not a run directory"):
        RunState.open(user, "h", SUMMARY, restart=True)
    assert (user / "run.json").read_text() == marker


def test_a_different_configuration_needs_restart(tmp_path):
    run = tmp_path / "run"
    RunState.open(run, "h1", SUMMARY)
    with pytest.raises(StateMismatchError, match="`restart`"):
        RunState.open(run, "h2", SUMMARY)
    assert RunState.open(run, "h2", SUMMARY, restart=True).hash == "h2"


def test_restart_removes_only_own_files(tmp_path):
    run = tmp_path / "run"
    RunState.open(run, "h1", SUMMARY)
    _own_files(run)
    (run / "mine.txt").write_text("user's")
    (run / "chunks" / "photo.tif").write_text("user's")
    state = RunState.open(run, "h2", SUMMARY, restart=True)
    assert sorted(p.name for p in run.iterdir()) == ["chunks", "mine.txt", "run.json"]
    assert [p.name for p in (run / "chunks").iterdir()] == ["photo.tif"]
    assert state.created_dirs == 1  # still the run's: it created the directory


def test_remove_keeps_directories_that_existed(tmp_path):
    (tmp_path / "p").mkdir()
    run = tmp_path / "p" / "b" / "c"
    state = RunState.open(run, "h", SUMMARY)
    _own_files(run)
    state.remove()
    assert (tmp_path / "p").is_dir() and not any((tmp_path / "p").iterdir())


def test_remove_keeps_an_existing_empty_directory(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    state = RunState.open(run, "h", SUMMARY)
    _own_files(run)
    state.remove()
    assert run.is_dir() and not any(run.iterdir())


def test_remove_of_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = RunState.open(Path("."), "h", SUMMARY)
    _own_files(tmp_path)
    (tmp_path / "keep.txt").write_text("user's")
    state.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_remove_never_follows_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    (outside / "chunks").mkdir(parents=True)
    for name in ("manifest.jsonl", "run.json", "chunks/r0-c0.tif"):
        (outside / name).write_text("user's")
    run = tmp_path / "run"
    state = RunState.open(run, "h", SUMMARY)
    (run / "escape").symlink_to(outside, target_is_directory=True)
    (run / "search.json").symlink_to(outside / "run.json")
    (run / "chunks" / "r5-c5.tif").symlink_to(outside / "chunks" / "r0-c0.tif")
    state.remove()
    assert sorted(os.listdir(run)) == ["chunks", "escape", "search.json"]
    assert os.listdir(run / "chunks") == ["r5-c5.tif"]
    assert all((outside / n).read_text() == "user's" for n in ("manifest.jsonl", "run.json"))
    assert (outside / "chunks" / "r0-c0.tif").read_text() == "user's"


def test_a_symlinked_chunks_directory_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "r0-c0.partial-1.tif").write_text("user's")
    run = tmp_path / "run"
    RunState.open(run, "h", SUMMARY)
    (run / "chunks").rmdir()
    (run / "chunks").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StateMismatchError, match="chunks"):
        RunState.open(run, "h", SUMMARY)
    assert (outside / "r0-c0.partial-1.tif").exists()

"""Every notebook in notebooks/ runs top to bottom; the committed copies carry no outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# Notebooks whose point is a picture: executing them must yield at least one PNG.
MUST_SHOW_IMAGE = {"quickstart.ipynb"}


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_notebooks_exist() -> None:
    assert "quickstart.ipynb" in _ids(NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ipykernel installs a `python3` kernelspec into the venv's share/jupyter; jupyter_client
    # launches its "python" argv with sys.executable, i.e. the interpreter running the tests.
    assert "python3" in KernelSpecManager().find_kernel_specs(), "no python3 kernelspec"

    # The kernel inherits the environment: put the checkout under test first on its path,
    # keep its temporary files (the notebooks write there) under tmp_path, and let ipykernel
    # choose its inline matplotlib backend.
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), pythonpath])))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("MPLBACKEND", raising=False)

    before = sorted(path.parent.iterdir())
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's cwd
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    images = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    if path.name in MUST_SHOW_IMAGE:
        assert images, f"{path.name} produced no image/png output"
    assert sorted(path.parent.iterdir()) == before, "the notebook wrote next to itself"

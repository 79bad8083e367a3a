"""Every notebook under notebooks/ runs top to bottom, in a temporary directory, in time.

The kernel is this interpreter (a kernelspec written to a temporary JUPYTER_PATH,
checked by a first injected cell), and Jupyter, IPython and matplotlib keep their
files in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "saliency-tf1-tests"
#: Wall-clock limit of one notebook, seconds (kernel start included).
LIMIT_S = 300



def test_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    assert {"01_quickstart.ipynb", "02_migrating.ipynb", "03_evaluating.ipynb",
            "04_beyond_images.ipynb"} <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_cleared(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: commit notebooks with outputs cleared")


@pytest.fixture
def jupyter_env(tmp_path, monkeypatch):
    """A kernelspec for sys.executable and Jupyter/IPython/matplotlib dirs, all in tmp_path."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "saliency_tf1 tests", "language": "python"}))
    for var, sub in [("JUPYTER_PATH", "jupyter"), ("JUPYTER_DATA_DIR", "jupyter"),
                     ("JUPYTER_CONFIG_DIR", "jupyter_config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib"),
                     ("TMPDIR", "tmp")]:
        (tmp_path / sub).mkdir(exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    work = tmp_path / "work"
    work.mkdir()
    return work


def run_notebook(path: Path, cwd: Path, limit_s: float) -> tuple[object, float]:
    """Executes ``path`` in ``cwd``; every cell's timeout is what is left of ``limit_s``."""
    nb = nbformat.read(path, as_version=4)
    check = nbformat.v4.new_code_cell(
        "import sys, os\n"
        f"assert sys.executable == {sys.executable!r}, sys.executable\n"
        f"assert os.getcwd() == {str(cwd)!r}, os.getcwd()")
    nb.cells.insert(0, check)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=int(limit_s),
                                     resources={"metadata": {"path": str(cwd)}})
    start = time.monotonic()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            left = limit_s - (time.monotonic() - start)
            if left <= 0:
                pytest.fail(f"{path.name}: over its {limit_s:.0f} s limit before cell {index}")
            client.timeout = max(1, int(left))
            client.execute_cell(cell, index)
    return nb, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, jupyter_env):
    nb, seconds = run_notebook(path, jupyter_env, LIMIT_S)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    # Figures were drawn (inline).
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.outputs)
    print(f"{path.name}: {seconds:.1f} s")

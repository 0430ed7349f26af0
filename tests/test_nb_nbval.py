"""nbval really compares outputs: a notebook whose stored output no longer matches what the
helpers print fails, and the same notebook untouched passes (so the failure is the change).

Runs `pytest --nbval` in a subprocess on a copy of notebook 03, with the project's sanitize
file and the current environment's kernel — the command CI runs, on one notebook.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "03-keys-and-rotation.ipynb"
SANITIZE = ROOT / "notebooks" / "nbval_sanitize.cfg"

pytestmark = pytest.mark.slow


def run_nbval(path: Path) -> subprocess.CompletedProcess:
    # An empty ini in the copy's folder: the project's addopts and conftest stay out of it.
    (path.parent / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", str(path), "--nbval-current-env",
         "--nbval-sanitize-with", str(SANITIZE), "-p", "no:cacheprovider", "-q", "--color=no"],
        capture_output=True, text=True, cwd=path.parent, timeout=600,
    )


def key_status_cell(notebook):
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith("status = tk.key_status()")]
    return cell


def test_nbval_passes_on_the_committed_notebook_and_fails_when_an_output_changes(tmp_path):
    unchanged = tmp_path / "unchanged" / NOTEBOOK.name
    unchanged.parent.mkdir()
    shutil.copyfile(NOTEBOOK, unchanged)
    result = run_nbval(unchanged)
    assert result.returncode == 0, result.stdout[-3000:]

    # What a helper change looks like to nbval: the stored output says one thing, the helper
    # now prints another (here: one value counted differently, in text/plain and text/html).
    changed = tmp_path / "changed" / NOTEBOOK.name
    changed.parent.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (output,) = key_status_cell(notebook).outputs
    for mime in ("text/plain", "text/html"):
        assert "3542" in output.data[mime]
        output.data[mime] = output.data[mime].replace("3542", "3541")
    nbformat.write(notebook, changed)
    result = run_nbval(changed)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "1 failed" in result.stdout and "Cell 1" in result.stdout
    assert "3541" in result.stdout and "3542" in result.stdout  # the diff nbval prints

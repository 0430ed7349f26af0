"""Run notebooks top to bottom in a fresh kernel of this environment and save their outputs.

    .venv/bin/python notebooks/execute.py                 # every notebooks/*.ipynb
    .venv/bin/python notebooks/execute.py notebooks/02-inspect-a-config.ipynb

The saved outputs are what `pytest --nbval` compares against, so re-run this after changing
a helper's output on purpose (and read the diff). It uses the same kernel nbval's
`--nbval-current-env` starts (this interpreter's ipykernel, working directory = the
notebook's folder), so what you save is what CI sees. No Jupyter server is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from queue import Empty

import nbformat
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, RunningKernel

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT = 300


def execute(path: Path, *, setup: str | None = None) -> int:
    """Execute `path` in place; returns the number of cells that raised.

    `setup`: code run in the kernel before the first cell, its output discarded (not saved).
    """
    notebook = nbformat.read(path, as_version=4)
    kernel = RunningKernel(CURRENT_ENV_KERNEL_NAME, cwd=str(path.parent))
    errors = 0
    try:
        if setup:
            _run(kernel, setup, 0)
        count = 0
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            count += 1
            cell.outputs = _run(kernel, cell.source, count)
            cell.execution_count = count
            errors += any(o.output_type == "error" for o in cell.outputs)
    finally:
        kernel.stop()
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return errors


def _run(kernel, source: str, count: int) -> list:
    msg_id = kernel.execute_cell_input(source, allow_stdin=False)
    outputs = []
    while True:
        try:
            msg = kernel.get_message(stream="iopub", timeout=CELL_TIMEOUT)
        except Empty:
            raise RuntimeError(f"cell {count} produced nothing for {CELL_TIMEOUT} s") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            break
        if kind == "stream":
            if outputs and outputs[-1].output_type == "stream" and outputs[-1].name == content["name"]:
                outputs[-1].text += content["text"]  # one output per stream run, as Jupyter saves it
            else:
                outputs.append(nbformat.v4.new_output("stream", name=content["name"], text=content["text"]))
        elif kind == "display_data":
            outputs.append(nbformat.v4.new_output("display_data", data=content["data"], metadata=content["metadata"]))
        elif kind == "execute_result":
            outputs.append(nbformat.v4.new_output("execute_result", data=content["data"],
                                                  metadata=content["metadata"], execution_count=count))
        elif kind == "error":
            outputs.append(nbformat.v4.new_output("error", ename=content["ename"], evalue=content["evalue"],
                                                  traceback=content["traceback"]))
        elif kind == "clear_output":
            outputs = []
    return outputs


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(HERE.glob("*.ipynb"))
    failed = 0
    for path in paths:
        errors = execute(path)
        print(f"{path}: {'ok' if not errors else f'{errors} cells raised'}")
        failed += bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

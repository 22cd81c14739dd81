"""Run a notebook in a real kernel and keep talking to it: the kernel-level widget tests.

nbclient answers the Output-widget protocol as a browser would, so moving a slider from an extra
cell runs the panel's callback and its redraw in the kernel; the browser side is tested in
tests/browser. Kernels inherit MPLBACKEND: tests/conftest.py unsets it so that they draw inline.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


class KernelSession:
    """A notebook that has run in a live kernel; `run` executes one more cell there."""

    def __init__(self, client: NotebookClient):
        self.client = client

    def outputs(self, source: str) -> list:
        """Append a code cell, execute it, return its outputs (an error output fails the test)."""
        cell = nbformat.v4.new_code_cell(source)
        self.client.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.client.nb.cells) - 1)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{source!r} raised {errors[0].ename}: {errors[0].evalue}"
        return cell.outputs

    def run(self, source: str) -> str:
        """Execute `source` in the kernel and return what it printed."""
        return "".join(o.get("text", "") for o in self.outputs(source)
                       if o.output_type == "stream")

    def assert_each_move_redraws(self, digest: str, moves) -> None:
        """Run each statement of `moves` in turn; after each, the printout of `digest` (e.g. a
        hash of the panel's image) must differ from every earlier one."""
        seen = {self.run(digest)}
        for move in moves:
            self.run(move)
            now = self.run(digest)
            assert now not in seen, f"{move} did not redraw the explorer"
            seen.add(now)

    @property
    def widget_state(self) -> dict:
        return self.client.widget_state


@contextmanager
def notebook_kernel(path: Path, timeout: int = 180):
    """Execute every code cell of the notebook at `path` in a fresh python3 kernel (an error in
    any cell fails the test, naming the cell), then yield a `KernelSession` on that kernel."""
    assert "MPLBACKEND" not in os.environ, "the kernel would inherit MPLBACKEND and draw nothing"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
        yield KernelSession(client)

"""notebooks/walkthrough.ipynb runs top to bottom, headless, with the tiny model (its cells assert
that imitation lowers the loss). It took 42 s on 2 CPU cores shared with two other jobs."""
import nbclient
import nbformat

from conftest import ROOT


def test_the_walkthrough_notebook_runs():
    nb = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "expert action:" in outputs and "alternative:" in outputs and "trained tokens of" in outputs
    assert "loss, first 3 steps:" in outputs and outputs.count("| moves:") == 2

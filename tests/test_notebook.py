"""notebooks/walkthrough.ipynb runs top to bottom, headless, with the tiny model (its cells assert
that imitation lowers the loss). It took 42 s on 2 CPU cores shared with two other jobs. The committed file holds its outputs."""
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


def test_the_committed_notebook_shows_its_outputs():
    # a reader on the web sees what each cell prints: saved executed, in order (python notebooks/run.py)
    nb = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.get("execution_count") for c in code] == list(range(1, len(code) + 1))
    outputs = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    assert "expert action:" in outputs and "trained tokens of" in outputs and outputs.count("| moves:") == 2

"""Execute notebooks/walkthrough.ipynb top to bottom with the tiny model and save it with its outputs,
so a reader on the web sees what each cell prints (tests/test_notebook.py runs it again in CI).

  python notebooks/run.py                       # regenerates the committed outputs (about a minute on a CPU)
  python notebooks/run.py --out /tmp/nb.ipynb   # write elsewhere

Needs the test packages (pip install -r requirements-test.txt: nbclient, nbformat, ipykernel).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402  (the project's plumbing, from ROOT)

NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"


def execute(path: Path = NOTEBOOK):
    """The notebook, executed in the repository root (the cells import the scripts' modules)."""
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    for cell in nb.cells:  # what the cells print; not progress bars, library warnings or run-specific metadata
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    return nb


def main(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(NOTEBOOK), help="where to write the executed notebook (default: in place)")
    args = p.parse_args(argv)
    nb = execute()
    common.write_atomic(args.out, nbformat.writes(nb) + "\n")
    print(f"wrote {args.out}: {sum(len(c.get('outputs', [])) for c in nb.cells)} outputs")


if __name__ == "__main__":
    common.run_main(main)

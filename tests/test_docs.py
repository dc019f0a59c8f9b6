"""The README and docs/ name only files, functions and flags that exist: the paper -> file map, the file
tree and every `module.function` they cite are checked against the code; so are the pointers in the
code's own docstrings, comments and messages."""
import ast
import io
import re
import tokenize

from conftest import ROOT

MODULES = ("common", "models", "chat", "agent", "prompts", "evaluate", "report", "train", "collect", "iwm", "reflect",
           "rl", "budget", "checkpoint", "tracking", "stats", "probe", "merge")


def defined(path) -> set:
    """Top-level functions, classes and assignments of a Python file."""
    tree = ast.parse((ROOT / path).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names.add(n.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start: end if end > 0 else None]


def test_the_paper_map_names_functions_that_exist():
    table = section((ROOT / "README.md").read_text(), "Paper → file map")
    rows = [ln for ln in table.splitlines() if ln.startswith("| §")]
    assert len(rows) >= 7
    checked = 0
    for row in rows:
        cell = row.rstrip("|").split("|")[-1]
        for part in cell.split(";"):
            m = re.match(r"\s*`([\w/]+\.py)`:\s*(.*)", part)
            if m:  # `file.py`: `f`, `g` (comments in brackets)
                names = re.findall(r"`(\w+)`", m.group(2))
                assert names, part
                for name in names:
                    assert name in defined(m.group(1)), f"README map: {m.group(1)} has no {name}"
                    checked += 1
                continue
            m = re.match(r"\s*`([\w/]+\.(?:py|sh))( --[\w-]+)?`", part)
            if m:  # `train.py --init`, `run.sh`
                assert (ROOT / m.group(1)).exists(), part
                if m.group(2):
                    assert f'"{m.group(2).strip()}"' in (ROOT / m.group(1)).read_text(), part
                checked += 1
                continue
            m = re.match(r"\s*`(\w+)\.(\w+)`", part)
            assert m, f"README map: cannot read {part!r}"
            assert m.group(2) in defined(f"{m.group(1)}.py"), f"README map: {m.group(1)}.py has no {m.group(2)}"
            checked += 1
    assert checked >= 25


def test_the_file_tree_lists_files_that_exist():
    tree = section((ROOT / "README.md").read_text(), "File tree").split("```")[1]
    listed = 0
    folder = None
    for line in tree.strip().splitlines():
        if not line.startswith(" "):  # a top-level entry: its path exists
            first = line.split()[0]
            assert (ROOT / first).exists(), f"README file tree: {first} does not exist"
            listed += 1
            folder = first if first.endswith("/") else None
            rest = line[len(first):]
        else:  # a continuation line of the entry above
            rest = line
        for name in re.findall(r"\b(\w+\.(?:py|md))\b", rest):
            where = ROOT / folder / name if folder in ("envs/", "docs/") else ROOT / name
            if folder in ("envs/", "docs/") or re.search(rf"\b{re.escape(name)}:", rest):
                assert where.exists(), f"README file tree: {where.relative_to(ROOT)} does not exist"
    py = {p.name for p in ROOT.glob("*.py")}
    named = set(re.findall(r"\b(\w+\.py)\b", tree))
    assert py <= named, f"scripts missing from the README file tree: {sorted(py - named)}"
    assert listed >= 15


def test_docs_cite_functions_that_exist():
    texts = {p.relative_to(ROOT): p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
    defs = {m: defined(f"{m}.py") for m in MODULES}
    env_defs = {p.stem: defined(f"envs/{p.name}") for p in (ROOT / "envs").glob("*.py")}
    missing = []
    for path, text in texts.items():
        if path.name == "LOG.md":  # history may name what no longer exists
            continue
        for mod, name in re.findall(r"\b(" + "|".join(MODULES) + r")\.([A-Za-z_]\w*)", text):
            if name in ("py", "sh", "json", "jsonl", "md", "png", "txt", "tsv", "pt", "args"):
                continue
            if name not in defs[mod]:
                missing.append(f"{path}: {mod}.{name}")
        for mod, name in re.findall(r"\benvs\.(\w+)\.([A-Za-z_]\w*)", text):
            if mod in env_defs and name not in env_defs[mod] and name != "py":
                missing.append(f"{path}: envs.{mod}.{name}")
    assert not missing, missing


# scripts that pass what they do not read on to another: their commands may use its flags/variables
FORWARDS = {"bench/rl_probe.py": "rl.py", "ablate.sh": "run.sh", "study.sh": "run.sh"}
SHARED = ("common.py", "models.py")  # argument helpers several scripts add
OUTSIDE = {"OMP_WAIT_POLICY", "CUDA_VISIBLE_DEVICES", "PYTHONPATH"}  # read by torch or Python, not by us


def test_docs_commands_use_flags_and_variables_that_exist():
    """Every `script.py --flag` and every `VAR=... bash run.sh` in README.md and docs/ names a flag the
    script parses and a variable run.sh (or ablate.sh) reads."""
    shared = "".join((ROOT / f).read_text() for f in SHARED)
    texts = {p.relative_to(ROOT): p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
    missing, flags_seen, vars_seen = [], 0, 0
    for path, text in texts.items():
        if path.name == "LOG.md":
            continue
        for line in text.splitlines():
            for m in re.finditer(r"\b((?:bench/)?\w+\.py)\b([^`|;&#]*)", line):
                if not (ROOT / m.group(1)).exists():
                    continue
                src = (ROOT / m.group(1)).read_text() + shared
                if m.group(1) in FORWARDS:
                    src += (ROOT / FORWARDS[m.group(1)]).read_text()
                for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", m.group(2)):
                    flags_seen += 1
                    if f'"{flag}"' not in src:
                        missing.append(f"{path}: {m.group(1)} {flag}")
            for m in re.finditer(r"((?:\b[A-Z_0-9]+=\S*\s+)+)(?:bash )?(run\.sh|ablate\.sh|study\.sh)", line):
                src = (ROOT / m.group(2)).read_text()
                if m.group(2) in FORWARDS:
                    src += (ROOT / FORWARDS[m.group(2)]).read_text()
                for var in set(re.findall(r"\b([A-Z_]+)=", m.group(1))) - OUTSIDE:
                    vars_seen += 1
                    if not re.search(rf"\b{var}\b", src):
                        missing.append(f"{path}: {m.group(2)} {var}")
    assert not missing, missing
    assert flags_seen >= 100 and vars_seen >= 30, (flags_seen, vars_seen)  # the patterns still find commands


SUFFIXES = ("py", "sh", "json", "jsonl", "md", "png", "txt", "tsv", "pt", "args", "gz", "lock")


def test_docstrings_comments_and_messages_point_at_what_exists():
    """Every `module.function` and every docs/, bench/, envs/, tests/, notebooks/ or presets/ file that
    a docstring, comment or message of the code names exists (the scripts' comments too)."""
    defs = {m: defined(f"{m}.py") for m in MODULES}
    files = sorted([*ROOT.glob("*.py"), *ROOT.glob("envs/*.py"), *ROOT.glob("bench/*.py"), *ROOT.glob("tests/*.py"),
                    *ROOT.glob("notebooks/*.py")])
    missing, pointers = [], 0

    def check(where, text):
        nonlocal pointers
        for mod, name in re.findall(r"\b(" + "|".join(MODULES) + r")\.([A-Za-z_]\w*)", text):
            if name not in SUFFIXES:
                pointers += 1
                if name not in defs[mod]:
                    missing.append(f"{where}: {mod}.{name}")
        for path in re.findall(r"\b((?:docs|bench|envs|tests|notebooks|presets)/[\w.-]+\.(?:md|py|sh|ipynb))", text):
            pointers += 1
            if not (ROOT / path).exists():
                missing.append(f"{where}: {path}")

    for f in files:
        for tok in tokenize.generate_tokens(io.StringIO(f.read_text()).readline):
            if tok.type in (tokenize.COMMENT, tokenize.STRING):
                check(f"{f.relative_to(ROOT)}:{tok.start[0]}", tok.string)
    for f in sorted([*ROOT.glob("*.sh"), *ROOT.glob("presets/*.sh"), *ROOT.glob("bench/*.sh")]):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if "#" in line:
                check(f"{f.relative_to(ROOT)}:{n}", line[line.index("#"):])
    assert not missing, missing
    assert pointers > 100

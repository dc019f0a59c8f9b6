"""BFCL v3 multi-turn function calling (PyPI `bfcl-eval`, installed with --no-deps): tool use as a text game.

A task is one multi-turn conversation of the Berkeley Function-Calling Leaderboard. The user asks for
something ("move final_report.pdf into a new folder temp"); the agent answers with Python-style calls
to the tools of a few simulated backends (a file system, a trading bot, a travel agency, a car...),
one call per step, reads each call's result, and ends its turn with `end_turn()`. Then the next user
request comes. The backends are the benchmark's own classes, run in this process.

  action        one call per step: cd(folder='document'), mv('a.txt', destination='b'), or end_turn()
  state         the current request (Goal), the earlier requests (Notes), the last calls and their
                results, and the tool list as signatures (`mv(source: str, destination: str)`): the
                benchmark's long descriptions do not fit a small model's prompt, so we show names and
                typed parameters only
  expert        the ground-truth calls of each turn, then end_turn()
  success       the benchmark's own checkers after every turn (bfcl_eval's state_checker and
                response_checker, the irrelevance rule for turns whose ground truth is empty): all turns
                must pass. score = the fraction of turns passed before the first failure
  branching     copy.deepcopy of the backend instances (thousands per second), no replay

Splits (the paper's): 125 training and test = 75 of the 200 `multi_turn_base` tasks (a seeded split);
the 125 are train = 100 and dev = 25 (held out of training, for choosing settings);
ood = the 599 tasks of long_context (bigger files and lists to read), miss_func (a tool is missing until
a later turn: the agent must not improvise) and miss_param (a request lacks a parameter: the agent
must not guess; one miss_func task whose ground truth uses a tool before it is shown is dropped),
interleaved so any first N has (nearly) equal numbers of each; evaluate.py also reports them
one by one. The three ood categories reuse the base scenarios with a twist, as in the benchmark.

Safety: an action is parsed with `ast` and must be a single call of a tool name with literal arguments;
it is dispatched with getattr on our own instances. Nothing is ever passed to eval, and the official
executor (which uses eval and a module-level instance cache shared across runs) is not used.

World-modelling alternatives: a tool call has no finite list of valid actions, so --k-iwm draws from
calls built from the task itself: every available tool with its required arguments filled from the
literals of this task's ground truth (file names, ids, amounts) and near-misses of the expert call
(one argument swapped for another literal of the same type). Most of them execute and produce real,
informative results or real errors from the backend ("No such file"), which is what world modelling
wants to learn. Policy proposals (--k-sr) are kept when they parse as a call to an available tool.
"""
from __future__ import annotations

import ast
import copy
import decimal
import difflib
import importlib
import inspect
import json
import random
import re
from importlib.resources import files

from envs.base import EnvError, TextEnv

OOD = ("long_context", "miss_func", "miss_param")
N_TRAIN, N_DEV = 100, 25  # of the 200 base tasks: train, dev; the other 75 are `test` (the paper's split)
SPLIT_SEED = 0
END_TURN = "end_turn()"
EXTRA_CALLS = 3  # a turn ends by itself after (its ground-truth calls + 3) calls: bounds an episode
OBS_WORDS = 80  # a call's result is cut to this many words (ls of a long_context folder is huge)
# Bounds on what an action may ask (envs/bfcl.py never hangs or raises on an answer). The ground truth
# of all 799 tasks stays far inside them: calls up to 6,839 characters (file contents), numbers up to
# 987,654, no nested containers, at most 6 items.
MAX_CALL_CHARS = 10_000
MAX_NUMBER = 10**9
MAX_ITEMS, MAX_DEPTH = 1_000, 4
# Arguments whose cost grows with their value inside a backend (an int power, a decimal precision);
# no ground-truth call uses these functions
BACKEND_BOUNDS = {"power": {"exponent": 1_000}, "square_root": {"precision": 1_000}}


def _require_bfcl():
    try:
        import bfcl_eval  # noqa: F401
    except ImportError:
        raise EnvError("BFCL is not installed: pip install --no-deps bfcl-eval==2026.3.23 mpmath==1.3.0 "
                       "(a plain install pulls several GB of model SDKs we do not use)") from None


def _data_dir():
    return files("bfcl_eval") / "data"


_CACHE: dict = {}


def load_category(category: str) -> list[dict]:
    """The benchmark's entries of one multi-turn category, each with its `ground_truth` (turns of calls)."""
    if category not in _CACHE:
        _require_bfcl()
        d = _data_dir()
        rows = [json.loads(ln) for ln in (d / f"BFCL_v4_multi_turn_{category}.json").read_text().splitlines() if ln]
        gts = {json.loads(ln)["id"]: json.loads(ln)["ground_truth"]
               for ln in (d / "possible_answer" / f"BFCL_v4_multi_turn_{category}.json").read_text().splitlines() if ln}
        for r in rows:
            r["ground_truth"] = gts[r["id"]]
        _CACHE[category] = rows
    return _CACHE[category]


def tool_docs(class_name: str) -> list[dict]:
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING

    key = ("doc", class_name)
    if key not in _CACHE:
        path = _data_dir() / "multi_turn_func_doc" / MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]
        _CACHE[key] = [json.loads(ln) for ln in path.read_text().splitlines() if ln]
    return _CACHE[key]


TYPES = {"string": "str", "integer": "int", "float": "float", "boolean": "bool", "array": "list", "dict": "dict",
         "any": "any", "tuple": "tuple"}


def signature(doc: dict) -> str:
    """`mv(source: str, destination: str)`; optional parameters show their default."""
    props, required = doc["parameters"]["properties"], set(doc["parameters"].get("required", []))
    parts = []
    for name, p in props.items():
        t = TYPES.get(p.get("type"), p.get("type", "any"))
        parts.append(f"{name}: {t}" if name in required else f"{name}: {t} = {p.get('default')!r}")
    return f"{doc['name']}({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------
# Parsing a call: ast only, literals only
def parse_call(text: str) -> tuple[str, list, dict]:
    """'mv(source="a", destination="b")' -> ("mv", [], {"source": "a", ...}). Raises ValueError with a
    short reason for anything that is not a single call of a plain name with literal arguments."""
    text = text.strip().rstrip(";").strip()
    if len(text) > MAX_CALL_CHARS:
        raise ValueError(f"a call is at most {MAX_CALL_CHARS:,} characters")
    if text.startswith("[") and text.endswith("]"):  # a one-element list, as some models write it
        text = text[1:-1].strip()
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a null byte
        raise ValueError("not a Python call") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError("expected one call like name(arg=value)")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError("arguments must be literals (strings, numbers, lists, True/False)") from None
    if len(kwargs) != len(node.keywords):
        raise ValueError("**kwargs are not allowed")
    for value in [*args, *kwargs.values()]:
        _check_literal(value, 0)
    for key, limit in BACKEND_BOUNDS.get(node.func.id, {}).items():
        v = kwargs.get(key)
        if isinstance(v, (int, float)) and abs(v) > limit:
            raise ValueError(f"{key} is at most {limit:,} in absolute value")
    return node.func.id, args, kwargs


def _check_literal(value, depth: int) -> None:
    """Numbers within +-MAX_NUMBER and finite, containers at most MAX_DEPTH deep and MAX_ITEMS long."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        if not (abs(value) <= MAX_NUMBER):  # also refuses nan
            raise ValueError(f"numbers are at most {MAX_NUMBER:,} in absolute value")
        return
    if isinstance(value, complex):
        raise ValueError("complex numbers are not allowed")
    if isinstance(value, (list, tuple, set, dict)):
        if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
            raise ValueError(f"containers are at most {MAX_DEPTH} deep and {MAX_ITEMS:,} long")
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        for v in items:
            _check_literal(v, depth + 1)


def format_call(name: str, args: list, kwargs: dict) -> str:
    return f"{name}({', '.join([repr(a) for a in args] + [f'{k}={v!r}' for k, v in kwargs.items()])})"


def result_text(value) -> str:
    """A call's result as the official executor writes it: strings as is, dicts as JSON, else str()."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _uses_hidden_tool(entry: dict) -> bool:
    """One miss_func entry (multi_turn_miss_func_49) calls `tail` in turn 1 although the benchmark
    holds `tail` back until turn 3: no agent that only uses the tools it is shown can pass it. Dropped."""
    first = {f: int(t) for t, fs in entry.get("missed_function", {}).items() for f in fs}
    return any(call.split("(")[0].strip() in first and i < first[call.split("(")[0].strip()]
               for i, turn in enumerate(entry["ground_truth"]) for call in turn)


class Backends:
    """The involved backend instances of one task, and a safe dispatcher over their public methods."""

    def __init__(self, entry: dict, long_context: bool):
        from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING, STATELESS_CLASSES

        self.instances, self.methods = {}, {}
        for class_name in entry["involved_classes"]:
            module = importlib.import_module(CLASS_FILE_PATH_MAPPING[class_name])
            inst = getattr(module, class_name)()
            if class_name not in STATELESS_CLASSES:
                inst._load_scenario(copy.deepcopy(entry["initial_config"].get(class_name, {})),
                                    long_context=long_context)
            self.instances[class_name] = inst
            for name, _ in inspect.getmembers(inst, predicate=inspect.ismethod):
                if not name.startswith("_"):
                    self.methods[name] = class_name

    def call(self, name: str, args: list, kwargs: dict, allowed: set) -> str:
        if name not in allowed or name not in self.methods:
            return f"Error during execution: unknown function {name!r}"
        method = getattr(self.instances[self.methods[name]], name)
        try:
            inspect.signature(method).bind(*args, **kwargs)
        except TypeError as e:
            return f"Error during execution: {e}"
        try:
            with decimal.localcontext():  # square_root sets the decimal precision of the whole process
                return result_text(method(*args, **kwargs))
        except Exception as e:  # the backends raise on bad values; the agent sees the error text
            return f"Error during execution: {' '.join(str(e).split())[:200]}"


def run_turns(entry: dict, long_context: bool) -> tuple[list, list[list[str]]]:
    """Execute the ground truth turn by turn on fresh instances: per turn, a deep copy of the instances
    after the turn, and the turn's execution results (what the checkers compare against)."""
    b = Backends(entry, long_context)
    allowed = set(b.methods)
    states, results = [], []
    for turn in entry["ground_truth"]:
        out = []
        for call in turn:
            name, args, kwargs = parse_call(call)
            out.append(b.call(name, args, kwargs, allowed))
        states.append(copy.deepcopy(b.instances))
        results.append(out)
    return states, results


def check_turn(model_instances: dict, model_results_so_far: list[str], turn_calls: int,
               gt_instances: dict, gt_results: list[str], gt_turn: list[str], turn: int) -> bool:
    """One turn through the benchmark's checkers (bfcl_eval multi_turn_checker's logic, per turn)."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import response_checker, state_checker

    if not gt_turn:  # irrelevance: the agent must make no call in this turn
        return turn_calls == 0
    if turn_calls == 0:
        return False
    if not state_checker(model_instances, gt_instances)["valid"]:
        return False
    return response_checker(model_results_so_far, gt_results, turn)["valid"]


class BFCLEnv(TextEnv):
    max_steps = 100  # not binding: each turn ends by itself after its call budget (EXTRA_CALLS)

    def __init__(self, name: str = "bfcl"):
        base, _, rest = name.partition(":")
        if base != "bfcl" or rest:
            raise EnvError(f"unknown env {name!r}: BFCL takes no settings (use `bfcl`)")
        _require_bfcl()
        self.name = name

    # ---- tasks ----------------------------------------------------------------------------
    def tasks(self, split: str) -> list[dict]:
        if split in ("train", "dev", "test"):
            order = list(range(len(load_category("base"))))
            random.Random(SPLIT_SEED).shuffle(order)
            idx = {"train": order[:N_TRAIN], "dev": order[N_TRAIN:N_TRAIN + N_DEV],
                   "test": order[N_TRAIN + N_DEV:]}[split]
            picks = [("base", i) for i in idx]
        elif split == "ood":
            perms = {c: list(range(len(load_category(c)))) for c in OOD}
            for k, c in enumerate(OOD):
                random.Random(SPLIT_SEED + 1 + k).shuffle(perms[c])
            picks = [(c, perms[c][i]) for i in range(len(perms[OOD[0]])) for c in OOD
                     if not _uses_hidden_tool(load_category(c)[perms[c][i]])]
        else:
            raise EnvError(f"unknown split {split!r}; choose one of: train, dev, test, ood")
        return [{"task_id": f"bfcl/{split}/{load_category(c)[i]['id']}", "split": split, "group": c,
                 "category": c, "index": i} for c, i in picks]

    def entry(self, task: dict) -> dict:
        return load_category(task["category"])[task["index"]]

    def expert_actions(self, task: dict) -> list[str]:
        return [a for turn in self.entry(task)["ground_truth"] for a in list(turn) + [END_TURN]]

    # ---- the game -------------------------------------------------------------------------
    def _reset(self, task: dict) -> str:
        e = self.entry(task)
        self._entry, self._long = e, task["category"] == "long_context"
        self._backends = Backends(e, self._long)
        self._gt_states, self._gt_results = run_turns(e, self._long)
        self._missed = {int(t): fs for t, fs in e.get("missed_function", {}).items()}
        self._hidden = set(e.get("excluded_function", [])) | {f for fs in self._missed.values() for f in fs}
        self._turn, self._turn_calls, self._turn_steps = 0, 0, 0
        self._results: list[str] = []  # every execution result of the agent's calls, all turns
        self._passed: list[bool] = []
        self._literals = self._task_literals(e)
        return self._turn_text(0)

    def _turn_text(self, turn: int) -> str:
        q = self._entry["question"][turn]
        text = " ".join(m["content"] for m in q if m["role"] == "user")
        new = self._missed.get(turn)
        if new:
            self._hidden -= set(new)
            text = (text + " " if text else "") + f"(New tools are available: {', '.join(new)}.)"
        return f"User: {text}" if text else "User: (no new message)"

    def _available(self) -> set:
        return {m for m in self._backends.methods if m not in self._hidden}

    def _step(self, action: str) -> tuple[str, float, bool]:
        if self.done_turns():
            return "The conversation is over.", 0.0, True
        self._turn_steps += 1
        try:
            name, args, kwargs = parse_call(action)
        except ValueError as e:
            obs = f"Error: could not parse {action[:60]!r}: {e}. Write one call like name(arg=value), or {END_TURN}"
            return self._maybe_force_end(obs)
        if name == "end_turn" and not args and not kwargs:
            return self._end_turn("")
        self._turn_calls += 1
        obs = self._backends.call(name, args, kwargs, self._available())
        self._results.append(obs)
        return self._maybe_force_end(" ".join(obs.split()[:OBS_WORDS]) + (" ..." if len(obs.split()) > OBS_WORDS else ""))

    def _maybe_force_end(self, obs: str):
        budget = len(self._entry["ground_truth"][self._turn]) + EXTRA_CALLS
        if self._turn_steps >= budget:
            return self._end_turn(obs + " (This turn's call budget is used up.)")
        return obs, 0.0, False

    def _end_turn(self, prefix: str):
        t = self._turn
        ok = check_turn(self._backends.instances, self._results, self._turn_calls, self._gt_states[t],
                        self._gt_results[t], self._entry["ground_truth"][t], t)
        self._passed.append(ok)
        self._turn, self._turn_calls, self._turn_steps = t + 1, 0, 0
        if self.done_turns():
            return (prefix + " " if prefix else "") + "The user has no more requests.", float(self.success()), True
        return (prefix + " " if prefix else "") + self._turn_text(self._turn), 0.0, False

    def done_turns(self) -> bool:
        return self._turn >= len(self._entry["ground_truth"])

    # ---- what the agent sees ----------------------------------------------------------------
    def goal(self) -> str:
        t = min(self._turn, len(self._entry["question"]) - 1)
        return self._turn_text_plain(t) or "(no new message: continue the previous request)"

    def _turn_text_plain(self, turn: int) -> str:
        return " ".join(m["content"] for m in self._entry["question"][turn] if m["role"] == "user")

    def notes(self) -> list[str]:
        """The earlier requests: a later turn often refers to them ("that file", the missing parameter)."""
        t = min(self._turn, len(self._entry["question"]) - 1)
        return [f"Earlier request: {q}" for q in (self._turn_text_plain(i) for i in range(t)) if q]

    def inventory(self) -> str:
        return ""  # prompts.state_text leaves the line out

    def valid_actions(self) -> list[str]:
        """Not a list of actions (a call's arguments are open) but the menu: every available tool's
        signature, and end_turn()."""
        sigs = []
        for class_name in self._entry["involved_classes"]:
            for doc in tool_docs(class_name):
                if doc["name"] in self._available():
                    sigs.append(signature(doc))
        return sigs + [END_TURN]

    def is_valid(self, action: str) -> bool:
        """A call of an available tool whose arguments bind to its parameters, or end_turn()."""
        try:
            name, args, kwargs = parse_call(action)
        except ValueError:
            return False
        if name == "end_turn":
            return not args and not kwargs
        if name not in self._available():
            return False
        method = getattr(self._backends.instances[self._backends.methods[name]], name)
        try:
            inspect.signature(method).bind(*args, **kwargs)
        except TypeError:
            return False
        return True

    def map_action(self, action: str) -> str:
        """The "mapped" mode: the first call-looking text with its tool name replaced by the closest
        available name (arguments kept); end_turn() when there is no call at all. Deterministic."""
        # the regex backtracks (quadratic in the length): answers are cut to 2,000 characters first
        # (an answer of the default 96 tokens is ~400)
        m = re.search(r"([A-Za-z_]\w*)\s*\((.*)\)", action[:2000])
        if not m:
            return END_TURN
        names = sorted(self._available() | {"end_turn"})
        name = m.group(1)
        if name not in names:
            name = max(names, key=lambda n: difflib.SequenceMatcher(None, m.group(1).lower(), n.lower()).ratio())
        return f"{name}({m.group(2)})"

    # ---- alternatives for world modelling ---------------------------------------------------
    @staticmethod
    def _task_literals(entry: dict) -> dict:
        lits: dict = {}
        for turn in entry["ground_truth"]:
            for call in turn:
                _, args, kwargs = parse_call(call)
                for v in list(args) + list(kwargs.values()):
                    lits.setdefault(type(v).__name__, [])
                    if v not in lits[type(v).__name__]:
                        lits[type(v).__name__].append(v)
        return lits

    def _fill(self, rng: random.Random, doc: dict) -> str:
        py = {"string": "str", "integer": "int", "float": "float", "boolean": "bool", "array": "list", "dict": "dict"}
        defaults = {"str": "file.txt", "int": 1, "float": 1.0, "bool": True, "list": [], "dict": {}}
        kwargs = {}
        for p in doc["parameters"].get("required", []):
            t = py.get(doc["parameters"]["properties"].get(p, {}).get("type"), "str")
            pool = self._literals.get(t) or [defaults[t]]
            kwargs[p] = rng.choice(pool)
        return format_call(doc["name"], [], kwargs)

    def alternatives(self, rng: random.Random, exclude: set, k: int) -> list[str]:
        pool = [END_TURN]
        for class_name in self._entry["involved_classes"]:
            for doc in tool_docs(class_name):
                if doc["name"] in self._available():
                    pool.append(self._fill(rng, doc))
        for action in sorted(exclude):  # near-misses of the expert call: one argument swapped
            try:
                name, args, kwargs = parse_call(action)
            except ValueError:
                continue
            for key in list(kwargs):
                others = [v for v in self._literals.get(type(kwargs[key]).__name__, []) if v != kwargs[key]]
                if others:
                    pool.append(format_call(name, args, {**kwargs, key: rng.choice(others)}))
        pool = list(dict.fromkeys(a for a in pool if a not in exclude))
        return rng.sample(pool, min(k, len(pool)))

    # ---- outcome and branching ----------------------------------------------------------------
    def success(self) -> bool:
        return self.done_turns() and all(self._passed)

    def score(self) -> float:
        n = len(self._entry["ground_truth"])
        passed = 0
        for ok in self._passed:
            if not ok:
                break
            passed += 1
        return passed / n

    _STATE = ("_backends", "_turn", "_turn_calls", "_turn_steps", "_results", "_passed", "_hidden",
              "trace", "observation", "done")

    def snapshot(self):
        return (self.task, copy.deepcopy({k: getattr(self, k) for k in self._STATE}))

    def restore(self, snap) -> None:
        task, state = snap
        if getattr(self, "task", None) is None or self.task["task_id"] != task["task_id"]:
            self.reset(task)  # the task's fixed parts (ground truth, schemas) come from reset
        for k, v in copy.deepcopy(state).items():
            setattr(self, k, v)

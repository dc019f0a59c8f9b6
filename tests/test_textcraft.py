"""TextCraft (envs/textcraft.py): the expert on every task, wrong play, splits, branching, determinism."""
import random

import pytest

import collect
import common
import envs
import evaluate
import iwm
import prompts
from envs import textcraft as tc


@pytest.fixture(scope="module")
def craft():
    return envs.make("textcraft")


def play(env, task, actions):
    env.reset(task)
    return [env.step(a)[0] for a in actions]


def test_the_expert_solves_every_task_of_every_split(craft):
    sizes = {s: len(craft.tasks(s)) for s in envs.SPLITS}
    assert sizes == {"train": 171, "dev": 40, "test": 80, "ood": 86}
    for split in envs.SPLITS:
        for task in craft.tasks(split):
            gold = craft.expert_actions(task)
            obs = play(craft, task, gold)
            assert craft.success() and craft.done, task["task_id"]
            assert not any(o.startswith("Could not") for o in obs), (task["task_id"], obs)
            assert all(a in craft.valid_actions() for a in gold), task["task_id"]
            assert len(gold) <= tc.OOD_MAX_PLAN < craft.max_steps


def test_splits_are_disjoint_goals_and_ood_is_deeper(craft):
    goals = {s: {t["goal"] for t in craft.tasks(s)} for s in envs.SPLITS}
    for i, a in enumerate(envs.SPLITS):
        for b in envs.SPLITS[i + 1:]:
            assert not goals[a] & goals[b], (a, b)
    depth = craft.tree.get_min_depth
    assert {depth(g) for s in ("train", "dev", "test") for g in goals[s]} == {2}
    assert min(depth(g) for g in goals["ood"]) > max(depth(g) for g in goals["train"])
    ids = [t["task_id"] for s in envs.SPLITS for t in craft.tasks(s)]
    assert len(ids) == len(set(ids))


def test_wrong_play_fails_with_the_games_own_texts(craft):
    task = next(t for t in craft.tasks("train") if t["goal"] == "minecraft:acacia_door")
    gold = craft.expert_actions(task)
    assert gold == ["get 2 acacia logs", "craft 4 acacia planks using 1 acacia logs",
                    "craft 4 acacia planks using 1 acacia logs", "craft 3 acacia door using 6 acacia planks"]
    # a missing item: one log fetched instead of two, so the door lacks planks
    obs = play(craft, task, ["get 1 acacia logs"] + gold[1:])
    assert obs[-1] == "Could not find enough items to craft minecraft:acacia_door" and not craft.success()
    assert craft.inventory() == "acacia planks (4)"
    # a wrong recipe: the right items, the wrong amount
    obs = play(craft, task, gold[:3] + ["craft 3 acacia door using 5 acacia planks"])
    assert obs[-1].startswith("Could not find a valid recipe for") and not craft.success()
    # a craftable item cannot be fetched, a tag cannot either, and text that is no command is answered
    obs = play(craft, task, ["get 6 acacia planks", "get 1 planks", "dance", "x" * 3000, ""])
    assert obs[:2] == ["Could not find acacia planks", "Could not find planks"]
    assert obs[2] == "Could not execute dance" and all(o.startswith("Could not") for o in obs[3:])
    assert craft.inventory() == "nothing" and not craft.success()
    assert not craft.is_valid("get 6 acacia planks") and craft.is_valid(gold[0])


def test_a_restored_state_is_the_expert_state_and_branches_do_not_leak(craft):
    task = craft.tasks("test")[5]
    gold = craft.expert_actions(task)
    craft.reset(task)
    for a in gold[:2]:
        craft.step(a)
    state, snap = prompts.state_text(craft.view()), craft.snapshot()
    for alt in craft.valid_actions()[:10] + ["get 64 stick", gold[2]]:
        craft.step(alt)
        craft.restore(snap)
        assert prompts.state_text(craft.view()) == state
    for a in gold[2:]:
        craft.step(a)
    assert craft.success()
    other = envs.make("textcraft")  # restore into a fresh env (collect.py's workers do this)
    other.restore(snap)
    assert prompts.state_text(other.view()) == state


def test_tasks_are_deterministic_and_leave_the_wheel_untouched(craft):
    lengths = {k: len(v) for k, v in craft.tree.itemid_recipes.items()}
    random.seed(123)
    before = random.getstate()
    task = craft.tasks("ood")[7]
    first = craft.reset(task)
    assert random.getstate() == before  # no reseeding of Python's global random
    tc._TASKS.clear()
    assert envs.make("textcraft").reset(task) == first
    assert {k: len(v) for k, v in craft.tree.itemid_recipes.items()} == lengths
    assert first.startswith("Crafting commands: ") and first.endswith(f"Goal: craft {tc.name(task['goal'])}.")


def test_distractors_setting_and_bad_settings():
    task = envs.make("textcraft").tasks("train")[0]
    plain = envs.make("textcraft:distractors=0")
    plain.reset(task)
    own = {r.recipe_str for r in tc.tree_recipes(plain.tree, task["goal"])}
    assert set(plain._commands) == own
    with_d = envs.make("textcraft")
    with_d.reset(task)
    assert own < set(with_d._commands) and len(set(with_d._commands) - own) <= tc.DISTRACTORS
    for bad in ("textcraft:nosuch=1", "textcraft:distractors=abc", "textcraft:distractors=-1"):
        with pytest.raises(envs.EnvError, match="bad setting"):
            envs.make(bad)


def test_state_text_lists_commands_with_their_commas_intact(craft):
    task = next(t for t in craft.tasks("train") if t["goal"] == "minecraft:acacia_door")
    craft.reset(task)
    text = prompts.state_text(craft.view())
    listed = text.split("\nValid actions: ")[1].split("; ")
    assert listed == craft.valid_actions()
    assert "craft 3 acacia fence using 2 stick, 4 acacia planks" in listed


def test_spine_runs_on_textcraft(tmp_path):
    run = tmp_path / "run"
    collect.main(["--env", "textcraft", "--tasks", "3", "--k-iwm", "2", "--k-sr", "1", "--model", "tiny-random",
                  "--dtype", "fp32", "--out", str(run)])
    ex, ro = common.read_jsonl(run / "expert.jsonl"), common.read_jsonl(run / "rollouts.jsonl")
    expert = envs.make("textcraft")
    assert len(ex) == len(ro) == sum(len(expert.expert_actions(t)) for t in expert.tasks("train")[:3])
    assert all(len(r["alternatives"]) == 3 for r in ro)
    # the uniform alternatives' outcomes are the game's answers, failures included
    outcomes = [a["next_state"] for r in ro for a in r["alternatives"] if a["source"] == "valid"]
    assert any(o.startswith("Could not find enough items") for o in outcomes)
    assert any(o.startswith(("Got ", "Crafted ")) for o in outcomes)
    iwm.main(["--run", str(run)])
    assert len(common.read_jsonl(run / "iwm.jsonl")) == 3 * len(ro)
    rows = evaluate.main(["--model", "tiny-random", "--dtype", "fp32", "--env", "textcraft", "--split", "test", "ood",
                          "--episodes", "2", "--batch", "4", "--max-steps", "3", "--out", str(run / "eval")])
    assert [r["n"] for r in rows] == [2, 2] and all(r["steps"] == 3.0 for r in rows)

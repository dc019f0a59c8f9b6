"""collect.py and iwm.py: schemas, branching, determinism, resume (reflect.py: test_reflect.py)."""
import shutil

import agent
import collect
import common
from conftest import COLLECT_ARGS
import envs
import iwm
import prompts

def test_expert_lines_reproduce_the_gold_path(collected):
    rows = common.read_jsonl(collected / "expert.jsonl")
    with envs.make("twx-cooking") as env:
        for task in env.tasks("train")[:3]:
            mine = [r for r in rows if r["task_id"] == task["task_id"]]
            assert [r["action"] for r in mine] == env.expert_actions(task)
            assert [r["step"] for r in mine] == list(range(len(mine)))
            env.reset(task)
            for r in mine:
                assert r["state"] == prompts.state_text(env.view())
                assert env.step(r["action"])[0] == r["next_state"]
                assert r["messages"][-1] == {"role": "assistant", "content": f"Action: {r['action']}"}
            assert env.success()


def test_rollouts_have_k_real_alternatives(collected):
    rows = common.read_jsonl(collected / "rollouts.jsonl")
    assert len(rows) == len(common.read_jsonl(collected / "expert.jsonl"))
    with envs.make("twx-cooking") as env:
        tasks = {t["task_id"]: t for t in env.tasks("train")[:3]}
        for r in rows:
            alts = r["alternatives"]
            assert [a["source"] for a in alts] == ["valid"] * 3 + ["policy"] * 2
            assert r["expert"]["action"] not in [a["action"] for a in alts]
            assert len({a["action"] for a in alts if a["source"] == "policy"}) == 2
            # each next state is what the env really answers from the expert state
            a = alts[r["step"] % len(alts)]
            gold = env.expert_actions(tasks[r["task_id"]])
            env.reset(tasks[r["task_id"]])
            for g in gold[: r["step"]]:
                env.step(g)
            assert prompts.state_text(env.view()) == r["state"]
            assert a["action"] in env.valid_actions()
            assert env.step(a["action"]) == (a["next_state"], a["reward"], a["done"])


def test_rerun_is_byte_identical_and_resume_loses_nothing(collected, tmp_path):
    again = tmp_path / "again"
    collect.main(COLLECT_ARGS + ["--out", str(again)])
    for name in ("expert.jsonl", "rollouts.jsonl"):
        assert (again / name).read_bytes() == (collected / name).read_bytes()
    # a run killed midway: the first task complete, the second half-written in rollouts.jsonl
    cut = tmp_path / "cut"
    cut.mkdir()
    ex, ro = common.read_jsonl(collected / "expert.jsonl"), common.read_jsonl(collected / "rollouts.jsonl")
    first = ex[0]["task_id"]
    n1 = sum(r["task_id"] == first for r in ex)
    common.write_jsonl(cut / "expert.jsonl", ex[: n1 + 4])
    common.write_jsonl(cut / "rollouts.jsonl", ro[: n1 + 2])
    collect.main(COLLECT_ARGS + ["--out", str(cut)])
    for name in ("expert.jsonl", "rollouts.jsonl"):
        assert (cut / name).read_bytes() == (collected / name).read_bytes()
    # the stats describe the whole collection, not only the part this (resumed) run added
    full, resumed = (common.read_jsonl(d / "collect_stats.json")[0] for d in (collected, cut))
    assert full["tasks"] == resumed["tasks"] == 3 and full["this_run"]["tasks"] == 3
    assert resumed["this_run"]["tasks"] == 2
    assert full["expert_steps"] == resumed["expert_steps"] == len(ex)
    assert full["branches"] == resumed["branches"] == 5 * len(ex)
    assert resumed["this_run"]["branches"] == 5 * (len(ex) - n1)
    assert full["replaced"] == sum(a.get("replaced", False) for r in ro for a in r["alternatives"])


def test_iwm_examples_predict_the_observation(collected, tmp_path):
    shutil.copy(collected / "rollouts.jsonl", tmp_path)
    shutil.copy(collected / "expert.jsonl", tmp_path)
    iwm.main(["--run", str(tmp_path), "--max-words", "5"])
    rows, ro = common.read_jsonl(tmp_path / "iwm.jsonl"), common.read_jsonl(collected / "rollouts.jsonl")
    assert len(rows) == 4 * len(ro)  # expert + 3 valid alternatives per state
    for r in rows:
        system, user, target = r["messages"]
        assert system["content"] == prompts.WORLD_MODEL_SYSTEM
        assert target["role"] == "assistant" and target["content"].startswith("Observation: ")
        assert "Action:" not in target["content"] and len(target["content"].split()) <= 1 + 5 + 1
        assert user["content"].split("\nAction: ")[-1] in {a["action"] for x in ro if x["id"] == r["id"].rsplit("/", 1)[0]
                                                            for a in x["alternatives"] + [x["expert"]]}
    iwm.main(["--run", str(tmp_path), "--ratio", "1"])
    assert len(common.read_jsonl(tmp_path / "iwm.jsonl")) == len(ro)


def test_policy_proposals_for_world_modelling_keep_invalid_moves(monkeypatch, tmp_path):
    # the policy's own moves as written (collect.py --k-proposals): a planted invalid proposal is
    # executed, its error text recorded, and iwm.py turns it into a world-model example whose target is
    # that error text (uniform valid alternatives never show what an invalid move does)
    planted = ["Action: fly to the moon", "Action: fly to the moon", "Action: look around"]

    def fake_generate(model, tok, chats, num_samples=1, **kw):
        return [planted[:num_samples] for _ in chats]

    monkeypatch.setattr(agent, "generate", fake_generate)
    out = tmp_path / "own"
    collect.main(["--env", "twx-cooking", "--tasks", "1", "--k-iwm", "1", "--k-sr", "0", "--k-proposals", "3",
                  "--model", "tiny-random", "--dtype", "fp32", "--out", str(out)])
    rows = common.read_jsonl(out / "rollouts.jsonl")
    for r in rows:
        props = [a for a in r["alternatives"] if a["source"] == "proposal"]
        want = ["fly to the moon"] + (["look around"] if r["expert"]["action"] != "look around" else [])
        assert [a["action"] for a in props] == want  # de-duplicated, never the expert's, invalid kept
        bad = props[0]
        assert bad["valid"] is False and all(a["valid"] for a in props[1:])
        with envs.make("twx-cooking") as env:  # the recorded outcome is the game's own answer
            env.reset(env.tasks("train")[0])
            for r2 in rows[: r["step"]]:
                env.step(r2["expert"]["action"])
            assert not env.is_valid("fly to the moon")
            assert env.step("fly to the moon")[0] == bad["next_state"]
    stats = common.read_jsonl(out / "collect_stats.json")[0]
    assert stats["invalid_proposals"] == len(rows) and stats["proposals"] >= len(rows)
    iwm.main(["--run", str(out)])
    ex = [e for e in common.read_jsonl(out / "iwm.jsonl") if e["meta"]["source"] == "proposal"]
    assert len(ex) == stats["proposals"]
    first = ex[0]["messages"]
    assert first[1]["content"].endswith("\nAction: fly to the moon")
    assert first[2]["content"] == "Observation: " + prompts.squash(rows[0]["alternatives"][1]["next_state"], 40)

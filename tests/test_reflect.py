"""reflect.py: the reflection filter, the written rows (a thought, then the expert action) and resume."""
import shutil

import agent
import common
import prompts
import reflect


def test_reflection_filter_drops_planted_bad_examples():
    a = "open fridge"
    assert reflect.judge("I should open the fridge because the recipe needs the carrot inside it.", a, "append", 6)[0] is None
    assert reflect.judge("The fridge holds the carrot I need, so opening it comes first.\nAction: open fridge", a, "model", 6)[0] is None
    assert reflect.judge("I need the knife first to slice things later on.\nAction: take knife", a, "model", 6)[0] == "wrong or missing conclusion"
    assert reflect.judge("I need the knife first to slice things later on.", a, "model", 6)[0] == "wrong or missing conclusion"
    assert reflect.judge("I need the knife first to slice things later on.\nAction: take knife", a, "append", 6)[0] == "wrong or missing conclusion"
    assert reflect.judge("The expert chose this, so opening the fridge is right here.", a, "append", 6)[0] == "label word"
    assert reflect.judge("Action 1 is the one that opens the fridge for the recipe.", a, "append", 6)[0] == "label word"
    assert reflect.judge("I open it. I open it. I open it. I open it.", a, "append", 3)[0] == "repetition"
    assert reflect.judge("Open it.", a, "append", 6)[0] == "too short"
    assert reflect.judge("I should open the fridge because the recipe needs the", a, "append", 6)[0] == "cut off"


def test_reflect_writes_thought_then_expert_action_and_resumes(collected, tmp_path):
    shutil.copy(collected / "rollouts.jsonl", tmp_path)
    ro = {r["id"]: r for r in common.read_jsonl(collected / "rollouts.jsonl")}
    first = next(iter(ro))
    planted = "I should take the cookbook first because the recipe inside tells me what to cook."
    # an earlier, interrupted run wrote one reflection: it must be kept as is, not generated again
    common.append_jsonl(tmp_path / "reflections.jsonl", {"id": first, "text": planted, "thought": planted, "dropped": None})
    reflect.main(["--run", str(tmp_path), "--model", "tiny-random", "--dtype", "fp32", "--min-words", "1",
                  "--max-new-tokens", "12"])
    logs = common.read_jsonl(tmp_path / "reflections.jsonl")
    kept = common.read_jsonl(tmp_path / "reflect.jsonl")
    assert sorted(x["id"] for x in logs) == sorted(ro) and logs[0]["text"] == planted
    assert len(kept) == sum(not x["dropped"] for x in logs) >= 1
    for k in kept:
        answer = k["messages"][-1]["content"]
        assert answer.startswith("Thought: ") and answer.endswith(f"\nAction: {ro[k['id']]['expert']['action']}")
        assert agent.parse_action(answer) == ro[k["id"]]["expert"]["action"]
        assert k["messages"][0]["content"] == prompts.POLICY_SYSTEM
    assert kept[0]["messages"][-1]["content"] == f"Thought: {planted}\nAction: {ro[first]['expert']['action']}"

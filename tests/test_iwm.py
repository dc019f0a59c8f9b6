"""iwm.py: the paper's world-model data and the targeted data (--targeted): every consequential move
with its outcome, a losing move's target saying the game is lost, no target repeated past the cap,
and exactly as many examples as the paper's data."""
import collections
import json

import pytest

import collect
import common
import iwm
import prompts


def _row(i, alternatives, expert=("take knife", "You take the knife.")):
    return {"id": f"g/train/{i}/0", "task_id": f"g/train/{i}", "step": 0, "state": f"state {i}",
            "expert": {"action": expert[0], "next_state": expert[1], "reward": 0, "done": False},
            "alternatives": alternatives}


UNKNOWN = "Unknown action: I'm not sure what you mean."


def _rows():
    rows = []
    for i in range(20):
        alts = [{"action": "dance", "next_state": UNKNOWN, "source": "proposal"},
                {"action": "sing", "next_state": UNKNOWN, "source": "proposal"},
                {"action": f"open box {i}", "next_state": f"You open box {i}.", "source": "valid"},
                {"action": f"look {i}", "next_state": f"You see room {i}.", "source": "valid"},
                {"action": f"take pen {i}", "next_state": f"You take pen {i}.", "source": "valid"},
                {"action": f"read note {i}", "next_state": f"Note {i} says hello.", "source": "valid"}]
        # the planted decisive moves, as collect.py --consequential records them
        alts.append({"action": "cook egg in oven", "next_state": "You roast the egg with the oven.",
                     "source": "consequential", "done": True, "ends": "lost", "score_change": 0.0})
        alts.append({"action": "cook egg in stove", "next_state": "You fry the egg with the stove.",
                     "source": "consequential", "done": False, "score_change": 0.25})
        rows.append(_row(i, alts))
    return rows


def test_targeted_data_holds_every_decisive_move_with_its_outcome_and_the_papers_size():
    rows = _rows()
    paper = iwm.build_examples(rows, ["valid", "proposal", "expert"], 0, 40)
    assert len(paper) == 140 and sum(e["messages"][-1]["content"].endswith(UNKNOWN) for e in paper) == 40
    ex = iwm.targeted_examples(rows, ["valid", "proposal", "expert"], 0, 40, 0.05, seed=0)
    assert len(ex) == len(paper)  # one epoch of either is the same W steps
    assert len({e["id"] for e in ex}) == len(ex)
    by_action = collections.defaultdict(list)
    for e in ex:
        by_action[e["messages"][1]["content"].rsplit("Action: ", 1)[1]].append(e)
    lost = by_action["cook egg in oven"]
    assert len(lost) == 20 and all(e["messages"][-1]["content"] ==
                                  "Observation: You roast the egg with the oven. " + prompts.GAME_ENDS.format("lost") for e in lost)
    assert all(e["meta"]["ends"] == "lost" for e in lost)
    assert len(by_action["cook egg in stove"]) == 20  # a score change is decisive too, and not an ending
    assert all("ends" not in e["messages"][-1]["content"] for e in by_action["cook egg in stove"])
    assert len(by_action["take knife"]) == 20  # every expert transition
    # the constant error target: 29% of the paper's data, at most the cap (7 of 140) here
    assert sum(e["messages"][-1]["content"].endswith(UNKNOWN) for e in ex) <= 7
    assert iwm.targeted_examples(rows, ["valid", "proposal", "expert"], 0, 40, 0.05, seed=0) == ex  # seeded
    ids = [e["id"] for e in ex]
    assert ids == sorted(ids, key=lambda x: (int(x.split("/")[2]), int(x.split("/")[-1])))  # state order


def test_targeted_needs_consequential_transitions(tmp_path):
    rows = [_row(0, [{"action": "look", "next_state": "A room.", "source": "valid"}])]
    with pytest.raises(common.UserError, match="collect.py --consequential"):
        iwm.targeted_examples(rows, ["valid", "expert"], 0, 40, 0.05, 0)


def test_consequential_collection_finds_the_move_that_loses_the_game(tmp_path):
    """On a real kitchen: executing every valid move finds the wrong appliances (they end the game,
    lost) and the right one (it scores), which uniform draws of one move per state rarely see."""
    collect.main(["--env", "twx-cooking", "--tasks", "2", "--k-iwm", "1", "--k-sr", "0", "--consequential",
                  "--out", str(tmp_path)])
    rows = common.read_jsonl(tmp_path / "rollouts.jsonl")
    cons = [a for r in rows for a in r["alternatives"] if a["source"] == "consequential"]
    cooks = [a for a in cons if a["action"].startswith("cook ")]
    assert any(a.get("ends") == "lost" for a in cooks) and any(a["score_change"] > 0 for a in cooks)
    assert all(a["done"] or a["score_change"] != 0 for a in cons)  # nothing kept without a sign
    assert rows[-1]["expert"].get("ends") == "won"  # the expert's last move wins
    iwm.main(["--run", str(tmp_path), "--targeted", "--out", str(tmp_path / "t.jsonl")])
    iwm.main(["--run", str(tmp_path)])
    t, paper = common.read_jsonl(tmp_path / "t.jsonl"), common.read_jsonl(tmp_path / "iwm.jsonl")
    assert len(t) == len(paper)
    assert any(e["messages"][-1]["content"].endswith(prompts.GAME_ENDS.format("lost")) for e in t)
    assert json.loads((tmp_path / "iwm_args.json").read_text())["targeted"] is False

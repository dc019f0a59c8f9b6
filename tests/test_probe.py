"""probe.py: the world-model probe scores predictions against the truth (exact, says the game ends),
and a model trained on the targeted data predicts its own training transitions better than before
(a learning test of the probe itself)."""

import collect
import common
import iwm
import probe
import prompts
import train


def test_score_reads_the_observation_and_the_ending_note():
    t = {"next": "You roast the egg with the oven.", "ends": "lost"}
    lost = prompts.GAME_ENDS.format("lost")
    assert probe.score(f"Observation: You roast the egg with the oven. {lost}", t, 40) == \
        {"exact": True, "says_ends": "lost", "ends_right": True, "outcome_right": None}
    assert probe.score("Observation: You roast the egg with the oven.", t, 40) == \
        {"exact": True, "says_ends": None, "ends_right": False, "outcome_right": None}
    t2 = {"next": "You take the knife.", "ends": None}
    assert probe.score(f"You take the knife. {lost}", t2, 40) == \
        {"exact": True, "says_ends": "lost", "ends_right": False, "outcome_right": None}
    # the outcome that decides the game (envs.outcome): a cook move's verb, right or wrong; no env, no outcome
    cook = {"next": "You fry the carrot with the stove.", "ends": None, "action": "cook carrot in stove"}
    assert probe.score("Observation: You roast the carrot with the stove.", cook, 40, "twx-cooking")["outcome_right"] is False
    assert probe.score("You fry the carrot with the stove. It smells good.", cook, 40, "twx-cooking")["outcome_right"] is True
    assert probe.score("You fry the carrot with the stove.", cook, 40)["outcome_right"] is None
    assert probe.score("You take the knife.", {**t2, "action": "take knife"}, 40, "twx-cooking")["outcome_right"] is None
    rows = [{"kind": "expert", "exact": True, "ends": None, "says_ends": None, "ends_right": True},
            {"kind": "consequential", "exact": False, "ends": "lost", "says_ends": "lost", "ends_right": True},
            {"kind": "consequential", "exact": True, "ends": "lost", "says_ends": None, "ends_right": False},
            {"kind": "other", "exact": False, "ends": None, "says_ends": "lost", "ends_right": False}]
    s = probe.summarize("m", rows)
    assert (s["exact"], s["exact_consequential"], s["ends"], s["false_ends"]) == (0.5, 0.5, 0.5, 0.5)
    assert (s["n_expert"], s["n_consequential"], s["n_other"], s["n_ends"]) == (1, 2, 1, 2)
    assert (s["outcome"], s["n_outcome"]) == (None, 0)  # no move names an outcome here
    s = probe.summarize("m", rows + [{**rows[0], "outcome_right": True}, {**rows[0], "outcome_right": False},
                                     {**rows[0], "outcome_right": False}])
    assert s["n_outcome"] == 3 and s["outcome"] == round(1 / 3, 4)


def test_probe_sees_what_a_trained_world_model_learned(tmp_path):
    collect.main(["--env", "twx-cooking", "--tasks", "2", "--k-iwm", "1", "--k-sr", "0", "--consequential",
                  "--out", str(tmp_path)])
    iwm.main(["--run", str(tmp_path), "--targeted", "--max-words", "8", "--out", str(tmp_path / "t.jsonl")])
    n = len(common.read_jsonl(tmp_path / "t.jsonl"))
    train.main(["--data", str(tmp_path / "t.jsonl"), "--model", "tiny-random", "--full", "--dtype", "fp32",
                "--batch", "8", "--steps", "150", "--lr", "3e-3", "--out", str(tmp_path / "wm")])
    rows = probe.main(["--data", str(tmp_path / "rollouts.jsonl"), "--models", "tiny-random", str(tmp_path / "wm"),
                       "--labels", "base", "trained", "--max-words", "8", "--max-new-tokens", "32", "--dtype", "fp32",
                       "--out", str(tmp_path / "probe")])
    base, trained = rows
    assert base["n"] == trained["n"] > 0 and n > 0
    # it learned some of its (training) transitions word for word (measured: 7% against 0) and, more
    # often, that the losing moves end the game (40% against 0), rarely saying so of the others
    assert base["exact"] == 0 and trained["exact"] > 0
    assert base["ends"] == 0 and trained["ends"] >= 0.3 and trained["false_ends"] < trained["ends"]
    md = (tmp_path / "probe" / "probe.md").read_text()
    assert md.count("\n| ") == 2 and md.startswith("| model |") and "| trained |" in md
    assert len(common.read_jsonl(tmp_path / "probe" / "probe.jsonl")) == 2 * base["n"]
    # scored again from its saved predictions (no model runs): the same summary, the same table
    assert probe.rescore(tmp_path / "probe") == rows
    assert (tmp_path / "probe" / "probe.md").read_text() == md and "names the outcome (" in md


def test_transitions_mix_decisive_and_ordinary_moves():
    rows = [{"id": f"g/{i}", "state": f"s{i}", "expert": {"action": "a", "next_state": "n"},
             "alternatives": [{"action": f"c{j}", "next_state": "x", "source": "consequential", "ends": "lost"}
                              for j in range(5)] + [{"action": "v", "next_state": "y", "source": "valid"}]}
            for i in range(40)]
    picked = probe.transitions(rows, 100, 0)
    kinds = [t["kind"] for t in picked]
    assert len(picked) == 100 and kinds.count("consequential") == 50 and kinds.count("expert") + kinds.count("other") == 50
    few = probe.transitions(rows[:2], 100, 0)  # fewer than the limit in all: every transition
    assert len(few) == 2 * 7

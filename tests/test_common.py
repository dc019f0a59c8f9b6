"""Plumbing: action parsing and mapping, JSONL errors, intervals, loss masks, generation."""
import json
import random

import pytest

import common
import prompts


@pytest.mark.parametrize("answer,action", [
    ("Action: open fridge", "open fridge"),
    ("Thought: I need the knife.\nAction: take knife", "take knife"),
    ("Action: look around\nAction: take knife\nmore text", "take knife"),
    ("  take cookbook  ", "take cookbook"),
    ("first line\nsecond", "first line"),
    ("Action:", ""),
    ("", ""),
])
def test_parse_action(answer, action):
    assert common.parse_action(answer) == action


def test_map_to_valid_is_valid_and_deterministic():
    valid = ["open fridge", "take knife", "take cookbook", "cook carrot in oven", "eat meal"]
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("abcdefghijklmnop qrstuvwxyz☃\n") for _ in range(rng.randint(0, 40)))
        got = common.map_to_valid(text, valid)
        assert got in valid and got == common.map_to_valid(text, list(reversed(valid)))
    assert common.map_to_valid("take the knife please", valid) == "take knife"
    assert common.map_to_valid("open the fridge", valid) == "open fridge"


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(common.UserError, match=r"bad\.jsonl:2: malformed JSON"):
        common.read_jsonl(p)
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(common.UserError, match=r"bad\.jsonl:2: expected a JSON object"):
        common.read_jsonl(p)
    with pytest.raises(common.UserError, match="no such file"):
        common.read_jsonl(tmp_path / "missing.jsonl")


def test_resume_cuts_a_torn_last_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "tr')
    assert common.resume_jsonl(p) == {"a", "b"}
    assert p.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_intervals_against_hand_computed_numbers():
    lo, hi = common.wilson(5, 10)  # p=0.5, n=10: 0.5 ± 0.2873 (Wilson)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert common.wilson(0, 20)[0] == 0.0 and common.wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    mean, half = common.mean_ci([0.2, 0.4, 0.6])  # sd 0.2, t(2) = 4.303: 4.303 * 0.2 / sqrt(3)
    assert mean == pytest.approx(0.4) and half == pytest.approx(0.49687, abs=1e-4)
    assert common.mean_ci([0.3]) == (0.3, 0.0)


def test_masks_train_exactly_each_assistant_turn_and_its_end_token(tiny):
    _, tok = tiny
    msgs = [{"role": "system", "content": "You play a text game."},
            {"role": "user", "content": "Observation: a fridge"},
            {"role": "assistant", "content": "Action: open fridge"},
            {"role": "user", "content": "Observation: You open the fridge."},
            {"role": "assistant", "content": "Action: take carrot"}]
    ids, labels = common.encode_chat(tok, msgs)
    assert len(ids) == len(labels)
    # the ids are exactly the rendered conversation's ids
    assert ids == tok(common.render(tok, msgs), add_special_tokens=False)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    first = tok("Action: open fridge", add_special_tokens=False)["input_ids"] + [end]
    second = tok("Action: take carrot", add_special_tokens=False)["input_ids"] + [end]
    trained = [i for i, lab in enumerate(labels) if lab != common.IGNORE]
    # two contiguous spans, each right after "<|im_start|>assistant\n", each ending on <|im_end|>
    head = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    spans, start = [], None
    for i in range(len(ids)):
        on = labels[i] != common.IGNORE
        if on and start is None:
            start = i
        if not on and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(ids)))
    assert [ids[a:b] for a, b in spans] == [first, second]
    for a, _ in spans:
        assert ids[a - len(head):a] == head
    assert labels[spans[0][1] - 1] == end and len(trained) == len(first) + len(second)
    # the final newline after the last <|im_end|> is not trained
    assert labels[-1] == common.IGNORE or ids[-1] == end


def test_zero_target_example_is_an_error(tiny):
    _, tok = tiny
    with pytest.raises(common.UserError, match="no trained token"):
        common.encode_chat(tok, [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
    with pytest.raises(common.UserError, match="no trained token"):
        common.encode_chat(tok, prompts.policy_messages("a long state " * 50, "Action: eat meal"), max_len=20)


def test_shared_prefill_sampling_matches_plain_greedy(tiny):
    model, tok = tiny
    chats = [prompts.policy_messages("Observation: a fridge\nValid actions: open fridge"),
             prompts.policy_messages("Goal: eat\nObservation: You take the knife. The counter is empty now.")]
    plain = common.generate(model, tok, chats, max_new_tokens=8)
    shared = common.generate(model, tok, chats, max_new_tokens=8, num_samples=3)
    assert [s for s in shared] == [[p] * 3 for p in plain]


def test_jsonl_writes_are_readable_and_stable(tmp_path):
    p = tmp_path / "out.jsonl"
    rows = [{"id": "1", "text": "ünï"}, {"id": "2", "b": [1, 2]}]
    common.write_jsonl(p, rows)
    assert common.read_jsonl(p) == rows and json.loads(p.read_text().splitlines()[0])["text"] == "ünï"

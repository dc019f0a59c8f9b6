"""train.py: the loss, the checkpoint, and a learning test (the tiny model beats its untrained self)."""
import json

import pytest
import torch
from safetensors.torch import load_file

import agent
import chat
import collect
import common
import evaluate
import models
import prompts
import train


def _batch(tok):
    chats = [prompts.policy_messages("Observation: a fridge\nValid actions: open fridge", "Action: open fridge"),
             prompts.policy_messages("Goal: eat\nObservation: You take the knife.", "Thought: I need food.\nAction: eat meal")]
    examples = []
    for c in chats:
        ids, labels = chat.encode_chat(tok, c)
        examples.append({"ids": ids, "labels": labels})
    return chat.collate(examples, tok.pad_token_id, models.default_device())  # the tiny fixture sits on the default device


def test_head_only_on_targets_equals_full_logits_loss(tiny):
    model, tok = tiny
    ids, labels, mask = _batch(tok)
    with torch.no_grad():
        a = train.sft_loss_sum(model, ids, mask, labels)
        b = train.full_logits_loss(model, ids, mask, labels)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    assert int((labels[:, 1:] != chat.IGNORE).sum()) == len(chat.target_logprobs(model, ids, mask, labels)[0])


def test_cosine_schedule():
    assert train.cosine_lr(0, 100, 10) == pytest.approx(1 / 11)
    assert train.cosine_lr(10, 100, 10) == pytest.approx(1.0)
    assert train.cosine_lr(55, 100, 10) == pytest.approx(0.5)
    assert train.cosine_lr(100, 100, 10) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    collect.main(["--env", "twx-coin:numLocations=2", "--tasks", "40", "--k-iwm", "1", "--k-sr", "0", "--out", str(out)])
    return out


def test_lora_checkpoint_trains_every_adapter_weight_and_reloads_identically(expert, tmp_path):
    out = tmp_path / "il"
    train.main(["--model", "tiny-random", "--dtype", "fp32", "--data", str(expert / "expert.jsonl"),
                "--steps", "4", "--batch", "4", "--lr", "1e-2", "--out", str(out)])
    saved = load_file(out / "adapter_model.safetensors")
    assert saved and all("lora_" in k for k in saved)
    # LoRA's B matrices start at zero: every one must have moved, and every A too (from its init)
    torch.manual_seed(0)
    fresh, _, _ = train.build_model(train.parse_args(["--model", "tiny-random", "--dtype", "fp32", "--data", "x", "--out", "y"]))
    init = {k.replace(".default", ""): v for k, v in fresh.state_dict().items() if "lora_" in k}
    for k, v in saved.items():
        assert not torch.equal(v, init[k]), k
    log = [json.loads(x) for x in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and json.loads((out / "args.json").read_text())["steps"] == 4
    # each step logs the tokens it read (prompt + target, no padding), at least its target tokens;
    # bench/cuda_check.py derives steady tokens/s from them and the cumulative rate
    assert all(r["tokens"] > r["target_tokens"] > 0 for r in log)
    assert ("peak_gb" in log[-1]) == torch.cuda.is_available()
    # reload (merged for inference) and unmerged trainable: the same greedy answers
    merged, tok = models.load_model(str(out), dtype="fp32")
    adapter, _ = models.load_model(str(out), dtype="fp32", trainable=True)
    chats = [prompts.policy_messages(r["state"]) for r in common.read_jsonl(expert / "expert.jsonl")[:6]]
    assert agent.generate(merged, tok, chats, max_new_tokens=6) == agent.generate(adapter, tok, chats, max_new_tokens=6)


def test_learning_imitation_beats_the_untrained_model(expert, tmp_path):
    """The tiny model, trained by train.py on 40 expert games of an easy setting, solves held-out
    games that its untrained self never solves."""
    ckpt = tmp_path / "il"
    train.main(["--model", "tiny-random", "--full", "--lr", "3e-3", "--steps", "60", "--batch", "16",
                "--data", str(expert / "expert.jsonl"), "--out", str(ckpt)])
    common_args = ["--env", "twx-coin:numLocations=2", "--split", "test", "--episodes", "20", "--batch", "20",
                   "--max-steps", "4"]
    before = evaluate.main(common_args + ["--model", "tiny-random", "--out", str(tmp_path / "before")])[0]
    after = evaluate.main(common_args + ["--model", str(ckpt), "--out", str(tmp_path / "after")])[0]
    assert before["success"] == 0.0
    assert after["success"] >= 0.3 and after["invalid_rate"] < before["invalid_rate"]


def _adapter(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


def test_constant_schedule_checkpoints_are_runs_of_their_length_and_continue(tmp_path):
    """The budget rule reads checkpoints of one run; with --schedule constant each checkpoint equals a
    fresh run of its length, weight for weight (with cosine it does not: its steps depend on the
    length), and a run continued from one (--continue-from) equals one longer run."""
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 3}")}
                              for i in range(10)])
    base = ["--data", str(data), "--model", "tiny-random", "--dtype", "fp32", "--batch", "4", "--lr", "1e-2",
            "--warmup-steps", "2", "--threads", "1"]
    train.main(base + ["--schedule", "constant", "--steps", "8", "--save-every", "4", "--out", str(tmp_path / "sweep")])
    train.main(base + ["--schedule", "constant", "--steps", "4", "--out", str(tmp_path / "fresh4")])
    point = tmp_path / "sweep-steps" / "step-00004"
    a, b = _adapter(point), _adapter(tmp_path / "fresh4")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (point / "state.pt").exists() and (tmp_path / "fresh4" / "state.pt").exists()
    # continued from the fresh 4-step run to 8 steps: the sweep's final checkpoint, weight for weight
    train.main(base + ["--schedule", "constant", "--steps", "8", "--continue-from", str(tmp_path / "fresh4" / "state.pt"),
                       "--out", str(tmp_path / "cont8")])
    a, b = _adapter(tmp_path / "sweep"), _adapter(tmp_path / "cont8")
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = common.read_jsonl(tmp_path / "cont8" / "loss.jsonl")
    assert [r["step"] for r in log] == list(range(1, 9))
    assert [r["loss"] for r in log] == [r["loss"] for r in common.read_jsonl(tmp_path / "sweep" / "loss.jsonl")]
    # a cosine run's midpoint is not a 4-step run: why the budget sweep needs the constant schedule
    train.main(base + ["--steps", "8", "--save-every", "4", "--out", str(tmp_path / "cos")])
    train.main(base + ["--steps", "4", "--out", str(tmp_path / "cos4")])
    a, b = _adapter(tmp_path / "cos-steps" / "step-00004"), _adapter(tmp_path / "cos4")
    assert not all(torch.equal(a[k], b[k]) for k in a)
    # continuing another setting, or a cosine run, is refused with one line
    with pytest.raises(common.UserError, match="of another setting .*lr"):
        train.main(base[:-6] + ["--lr", "2e-2", "--warmup-steps", "2", "--threads", "1", "--schedule", "constant",
                                "--steps", "8", "--continue-from", str(point / "state.pt"), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        train.parse_args(base + ["--steps", "8", "--continue-from", str(point / "state.pt"), "--out", str(tmp_path / "y")])

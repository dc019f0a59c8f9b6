"""Plumbing: action parsing and mapping, JSONL errors, loss masks, generation."""
import json
import random

import pytest

import common
import models
import envs.base
import chat
import agent
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
    assert agent.parse_action(answer) == action


def test_map_to_valid_is_valid_and_deterministic():
    valid = ["open fridge", "take knife", "take cookbook", "cook carrot in oven", "eat meal"]
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("abcdefghijklmnop qrstuvwxyz☃\n") for _ in range(rng.randint(0, 40)))
        got = envs.base.map_to_valid(text, valid)
        assert got in valid and got == envs.base.map_to_valid(text, list(reversed(valid)))
    assert envs.base.map_to_valid("take the knife please", valid) == "take knife"
    assert envs.base.map_to_valid("open the fridge", valid) == "open fridge"


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


def test_masks_train_exactly_each_assistant_turn_and_its_end_token(tiny):
    _, tok = tiny
    msgs = [{"role": "system", "content": "You play a text game."},
            {"role": "user", "content": "Observation: a fridge"},
            {"role": "assistant", "content": "Action: open fridge"},
            {"role": "user", "content": "Observation: You open the fridge."},
            {"role": "assistant", "content": "Action: take carrot"}]
    ids, labels = chat.encode_chat(tok, msgs)
    assert len(ids) == len(labels)
    # the ids are exactly the rendered conversation's ids
    assert ids == tok(chat.render(tok, msgs), add_special_tokens=False)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    first = tok("Action: open fridge", add_special_tokens=False)["input_ids"] + [end]
    second = tok("Action: take carrot", add_special_tokens=False)["input_ids"] + [end]
    trained = [i for i, lab in enumerate(labels) if lab != chat.IGNORE]
    # two contiguous spans, each right after "<|im_start|>assistant\n", each ending on <|im_end|>
    head = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    spans, start = [], None
    for i in range(len(ids)):
        on = labels[i] != chat.IGNORE
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
    assert labels[-1] == chat.IGNORE or ids[-1] == end


def test_zero_target_example_is_an_error(tiny):
    _, tok = tiny
    with pytest.raises(common.UserError, match="no trained token"):
        chat.encode_chat(tok, [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
    with pytest.raises(common.UserError, match="no trained token"):
        chat.encode_chat(tok, prompts.policy_messages("a long state " * 50, "Action: eat meal"), max_len=20)


def test_shared_prefill_sampling_matches_plain_greedy(tiny):
    model, tok = tiny
    chats = [prompts.policy_messages("Observation: a fridge\nValid actions: open fridge"),
             prompts.policy_messages("Goal: eat\nObservation: You take the knife. The counter is empty now.")]
    plain = agent.generate(model, tok, chats, max_new_tokens=8)
    shared = agent.generate(model, tok, chats, max_new_tokens=8, num_samples=3)
    assert [s for s in shared] == [[p] * 3 for p in plain]


def test_jsonl_writes_are_readable_and_stable(tmp_path):
    p = tmp_path / "out.jsonl"
    rows = [{"id": "1", "text": "ünï"}, {"id": "2", "b": [1, 2]}]
    common.write_jsonl(p, rows)
    assert common.read_jsonl(p) == rows and json.loads(p.read_text().splitlines()[0])["text"] == "ünï"


def _lora_checkpoint(base_name, out, scale, seed, init=None):
    """A LoRA checkpoint written by models.save_checkpoint, with random adapter weights of a given size."""
    import argparse

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    model, tok = models.load_model(init or base_name, dtype="fp32")
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    g = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data = torch.randn(p.shape, generator=g) * scale
    models.save_checkpoint(model, tok, argparse.Namespace(), init or base_name, [], out)
    return out


def test_bf16_loading_keeps_the_adapter_that_a_merge_would_round_away(tmp_path):
    """In bf16 the adapter stays separate and exact; merged, a small update mostly vanishes."""
    import torch
    from peft import PeftModel

    ck = _lora_checkpoint("tiny-random", tmp_path / "ck", scale=0.004, seed=0)
    saved = {n: p.detach().clone() for n, p in models.load_model(str(ck), dtype="fp32", trainable=True)[0].named_parameters()
             if "lora_" in n}
    bf, _ = models.load_model(str(ck), dtype="bf16")
    assert isinstance(bf, PeftModel)  # not merged
    loaded = {n: p for n, p in bf.named_parameters() if "lora_" in n}
    # held in bf16 like the base (a bf16 product, as in training's autocast): each weight rounded once
    assert loaded.keys() == saved.keys() and all(loaded[n].dtype == torch.bfloat16 for n in saved)
    assert all(torch.equal(loaded[n], saved[n].to(torch.bfloat16)) for n in saved)
    assert not isinstance(models.load_model(str(ck), dtype="fp32")[0], PeftModel)  # fp32: merged (exact enough)
    # what a bf16 merge does to the same update: most changed weights round back to their base value
    base = models.load_model("tiny-random", dtype="bf16")[0]
    merged = PeftModel.from_pretrained(models.load_model("tiny-random", dtype="bf16")[0], str(ck)).merge_and_unload()
    moved = erased = 0
    for (n, w0), (_, w1) in zip(base.named_parameters(), merged.named_parameters()):
        if w0.dim() == 2 and "embed" not in n:
            moved += w0.numel()
            erased += torch.eq(w0, w1).sum().item()
    assert erased / moved > 0.3


def test_stacked_adapter_checkpoint_adds_both_updates(tmp_path):
    """An adapter over an adapter checkpoint (rl.py's output) loads as both adapters, active together."""
    import torch

    inner = _lora_checkpoint("tiny-random", tmp_path / "inner", scale=0.05, seed=1)
    outer = _lora_checkpoint("tiny-random", tmp_path / "outer", scale=0.05, seed=2, init=str(inner))
    ids = torch.tensor([[5, 17, 33, 2, 9, 41]], device=models.default_device())
    with torch.no_grad():
        ref = models.load_model(str(outer), dtype="fp32")[0](ids).logits  # both merged in fp32
        only_inner = models.load_model(str(inner), dtype="fp32")[0](ids).logits
        stacked = models.load_model(str(outer), dtype="bf16")[0](ids).logits.float()
    update = (ref - only_inner).abs().max()
    assert update > 0.05
    assert (stacked - ref).abs().max() < 0.25 * update
    with pytest.raises(common.UserError, match="stacked"):
        models.load_model(str(outer), dtype="bf16", trainable=True)


def test_a_second_conversion_keeps_the_folder_already_in_place(tmp_path):
    # two scripts started at once on a fresh machine both convert the embedded model; the loser's
    # rename must not crash its run, and the winner's folder stays as it is
    out, first, second = tmp_path / "model", tmp_path / "a", tmp_path / "b"
    for d, text in ((first, "first"), (second, "second")):
        d.mkdir()
        (d / "config.json").write_text(text)
    assert models._publish_dir(first, out) == out
    assert models._publish_dir(second, out) == out
    assert (out / "config.json").read_text() == "first" and not second.exists()
    # a folder in the way that is not a finished model is still an error
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "partial").write_text("")
    with pytest.raises(OSError):
        models._publish_dir(tmp_path / "c", broken)


def test_auto_dtype_and_training_autocast_follow_fast_bf16(monkeypatch, tiny):
    # bf16 only where the device runs it natively: on an AVX2-only CPU it is ~100x slower than fp32
    # (bench/cpu_dtype.py), so auto picks fp32 there and training does not autocast an fp32 model
    import torch

    model, _ = tiny
    a = torch.ones(2, 2)
    for fast, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(models, "fast_bf16", lambda device, fast=fast: fast)
        assert models.resolve_dtype("auto", "cpu") == want
        assert models.resolve_dtype("fp32", "cpu") == torch.float32 and models.resolve_dtype("bf16", "cpu") == torch.bfloat16
        with models.train_autocast(model):  # the tiny model is fp32
            assert (a @ a).dtype == want
    # frozen bf16 base weights compute in bf16 whatever the device (the user asked for them)
    bf, _ = models.load_model("tiny-random", dtype="bf16")
    with models.train_autocast(bf):
        assert (a @ a).dtype == torch.bfloat16
    with pytest.raises(common.UserError, match="fp64"):
        models.resolve_dtype("fp64", "cpu")


CPUINFO = {  # the flags lines of real machines, shortened
    "xeon-avx512-no-bf16": "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni\n",
    "sapphire-rapids": "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n",
    "epyc-avx2": "flags\t\t: sse4_2 avx avx2 fma bmi2\n",
    "epyc-genoa": "flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n",
    "arm-neoverse-v1": "Features\t: fp asimd sve bf16 i8mm\n",
    "arm-no-bf16": "Features\t: fp asimd crc32\n",
}


def test_bf16_is_chosen_by_native_instructions_not_by_emulation(monkeypatch):
    # oneDNN says "bf16 supported" on plain AVX-512 because it can emulate it (4x slower than fp32
    # there): the CPU's own flags decide; a machine that shows none falls back to a timed matmul
    want = {"xeon-avx512-no-bf16": False, "sapphire-rapids": True, "epyc-avx2": False, "epyc-genoa": True,
            "arm-neoverse-v1": True, "arm-no-bf16": False}
    assert {k: models.cpu_bf16_flags(v) for k, v in CPUINFO.items()} == want
    assert models.cpu_bf16_flags("processor : 0\nmodel name : ?\n") is None
    monkeypatch.setattr(models, "_CPU_BF16", [])
    monkeypatch.setattr(common.Path, "read_text", lambda self, *a, **k: CPUINFO["xeon-avx512-no-bf16"])
    assert models.fast_bf16("cpu") is False and models.resolve_dtype("auto", "cpu").__repr__() == "torch.float32"
    assert "no native bf16" in models.fast_bf16_reason("cpu")
    monkeypatch.setattr(models, "_CPU_BF16", [])
    monkeypatch.setattr(common.Path, "read_text", lambda self, *a, **k: "")
    calls = []
    monkeypatch.setattr(models, "timed_bf16_faster", lambda: calls.append(1) or True)
    assert models.fast_bf16("cpu") is True and models.fast_bf16("cpu") is True and calls == [1]  # asked once
    assert "timed matmul" in models.fast_bf16_reason("cpu")


def test_saved_arguments_say_what_auto_became(monkeypatch, tmp_path):
    # "auto" alone would not tell a bf16 run from an fp32 one; the args file records the dtype used
    import argparse

    for fast, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(models, "fast_bf16", lambda device, fast=fast: fast)
        args = argparse.Namespace(dtype="auto", seed=0)
        common.save_args(args, tmp_path, f"{want}.json")
        saved = json.loads((tmp_path / f"{want}.json").read_text())
        assert saved.pop("dtype_reason") == models.fast_bf16_reason("cpu")  # why auto chose so
        assert saved == {"dtype": "auto", "seed": 0, "dtype_resolved": want}
        assert args.dtype_resolved == want  # so train.py's checkpoint args.json has it as well
        full = argparse.Namespace(dtype="auto", full=True)  # full fine-tuning keeps fp32 weights
        common.save_args(full, tmp_path)
        assert full.dtype_resolved == "fp32"
    common.save_args(argparse.Namespace(seed=1), tmp_path, "none.json")  # no --dtype, no entry
    assert "dtype_resolved" not in json.loads((tmp_path / "none.json").read_text())

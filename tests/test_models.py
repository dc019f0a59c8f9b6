"""models.py: the dtype each CPU and GPU class gets (CPU flags, mocked CUDA capabilities), the fp16 path
(autocast + gradient scaling), one device per process (torchrun, --shard), a Hub id that cannot be
fetched, the embedded model's conversion, and adapters loaded unmerged in bf16 (stacked ones too)."""
import argparse
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

import checkpoint
import common
import models
import prompts
import train
from conftest import ROOT

# (compute capability, card) -> what --dtype auto gives: bf16 from Ampere (8.0) on, fp16 below
GPUS = {(7, 0): ("Tesla V100", torch.float16), (7, 5): ("Tesla T4", torch.float16),
        (8, 0): ("A100", torch.bfloat16), (8, 6): ("RTX 3090", torch.bfloat16), (9, 0): ("H100", torch.bfloat16)}


def _mock_cuda(monkeypatch, capability, name, count=1):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers, emulation included


def test_auto_dtype_by_compute_capability(monkeypatch):
    for capability, (name, want) in GPUS.items():
        _mock_cuda(monkeypatch, capability, name)
        assert models.resolve_dtype("auto", "cuda") == want, name
        assert models.fast_bf16("cuda") is (want == torch.bfloat16)
        reason = models.fast_bf16_reason("cuda")
        assert name in reason and f"{capability[0]}.{capability[1]}" in reason
        assert ("gradient scaling" in reason) is (want == torch.float16)
        assert models.resolve_dtype("fp32", "cuda") == torch.float32  # asked for, given


def test_saved_arguments_say_what_auto_became_on_a_t4(monkeypatch, tmp_path):
    _mock_cuda(monkeypatch, (7, 5), "Tesla T4")
    args = argparse.Namespace(dtype="auto")
    models.note_dtype(args)
    common.save_args(args, tmp_path)
    saved = json.loads((tmp_path / "args.json").read_text())
    assert saved["dtype_resolved"] == "fp16" and "Tesla T4 (compute capability 7.5)" in saved["dtype_reason"]


def test_products_and_scaler_follow_the_weights(monkeypatch, tiny):
    model, _ = tiny  # fp32 weights on the CPU
    monkeypatch.setattr(models, "fast_bf16", lambda device: False)
    assert models.autocast_dtype(model) is None and not models.grad_scaler(model).is_enabled()
    monkeypatch.setattr(models, "fast_bf16", lambda device: True)
    assert models.autocast_dtype(model) == torch.bfloat16 and not models.grad_scaler(model).is_enabled()
    half, _ = models.load_model("tiny-random", dtype="fp16", device="cpu")
    assert models.autocast_dtype(half) == torch.float16 and models.grad_scaler(half).is_enabled()
    a = torch.ones(2, 2)
    with models.train_autocast(half):
        assert (a @ a).dtype == torch.float16


def test_fp16_training_scales_gradients_and_learns(tmp_path, monkeypatch):
    """The path a T4 takes (fp16 base, fp32 LoRA, fp16 products, a gradient scaler), run on the CPU."""
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 3}")}
                              for i in range(8)])
    scalers = []
    original = models.grad_scaler
    monkeypatch.setattr(models, "grad_scaler", lambda m: scalers.append(original(m)) or scalers[-1])
    train.main(["--data", str(data), "--model", "tiny-random", "--dtype", "fp16", "--batch", "4", "--steps", "20",
                "--lr", "2e-2", "--out", str(tmp_path / "il")])
    assert scalers and scalers[0].is_enabled() and scalers[0].get_scale() > 1  # scaled, and still scaling
    loss = [r["loss"] for r in common.read_jsonl(tmp_path / "il" / "loss.jsonl")]
    assert all(x == x for x in loss) and sum(loss[-4:]) / 4 < loss[0] - 0.3
    saved = json.loads((tmp_path / "il" / "args.json").read_text())
    assert saved["dtype_resolved"] == "fp16"


def test_each_process_gets_its_own_gpu(monkeypatch):
    _mock_cuda(monkeypatch, (8, 0), "A100", count=4)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert models.default_device() == "cuda"
    assert [models.shard_device(f"{i}/4") for i in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert models.shard_device("5/8") == "cuda:1"  # more shards than GPUs: they share round-robin
    assert models.shard_device("0/1") == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "2")  # under torchrun
    assert models.default_device() == "cuda:2" and models.shard_device("0/4") == "cuda:2"
    _mock_cuda(monkeypatch, (8, 0), "A100", count=1)  # one visible GPU (CUDA_VISIBLE_DEVICES per process)
    monkeypatch.delenv("LOCAL_RANK")
    assert models.shard_device("1/2") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.shard_device("1/2") == "cpu"


@pytest.mark.parametrize("env", [{"HF_ENDPOINT": "http://127.0.0.1:9"}, {"HF_HUB_OFFLINE": "1"}])
def test_a_hub_id_that_is_not_cached_fails_fast_with_the_remedy(tmp_path, env):
    """No network (a closed port stands for it) or offline mode: one line naming the remedy within
    seconds, not a minute of retries; nothing written."""
    t0 = time.time()
    r = subprocess.run([sys.executable, "evaluate.py", "--model", "someorg/not-cached-model", "--env", "twx-coin",
                        "--episodes", "1", "--out", str(tmp_path / "ev")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "HF_HOME": str(tmp_path / "hf"), **env})
    assert r.returncode == 2 and time.time() - t0 < 30
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not in the local Hugging Face cache" in lines[0]
    assert "hf download someorg/not-cached-model" in lines[0]
    assert ("HF_HUB_OFFLINE=1 skips the network" in lines[0]) is ("HF_ENDPOINT" in env)
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").iterdir())


def _lora_checkpoint(base_name, out, scale, seed, init=None):
    """A LoRA checkpoint written by checkpoint.save_checkpoint, with random adapter weights of a given size."""
    model, tok = models.load_model(init or base_name, dtype="fp32")
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    g = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data = torch.randn(p.shape, generator=g) * scale
    checkpoint.save_checkpoint(model, tok, argparse.Namespace(), init or base_name, [], out)
    return out


def test_bf16_loading_keeps_the_adapter_that_a_merge_would_round_away(tmp_path):
    """In bf16 the adapter stays separate and exact; merged, a small update mostly vanishes."""
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
    for fast, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(models, "fast_bf16", lambda device, fast=fast: fast)
        args = argparse.Namespace(dtype="auto", seed=0)
        models.note_dtype(args)
        common.save_args(args, tmp_path, f"{want}.json")
        saved = json.loads((tmp_path / f"{want}.json").read_text())
        assert saved.pop("dtype_reason") == models.fast_bf16_reason("cpu")  # why auto chose so
        assert saved == {"dtype": "auto", "seed": 0, "dtype_resolved": want}
        assert args.dtype_resolved == want  # so train.py's checkpoint args.json has it as well
        full = argparse.Namespace(dtype="auto", full=True)  # full fine-tuning keeps fp32 weights
        models.note_dtype(full)
        assert full.dtype_resolved == "fp32"
    common.save_args(argparse.Namespace(seed=1), tmp_path, "none.json")  # no --dtype, no entry
    assert "dtype_resolved" not in json.loads((tmp_path / "none.json").read_text())

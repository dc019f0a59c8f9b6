"""models.py: the dtype each GPU class gets (mocked capabilities), the fp16 path (autocast + gradient
scaling), one device per process (torchrun, --shard), and a Hub id that cannot be fetched."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

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
    import argparse

    _mock_cuda(monkeypatch, (7, 5), "Tesla T4")
    args = argparse.Namespace(dtype="auto")
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

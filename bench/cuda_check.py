"""The CUDA path, checked and measured on one GPU: bf16 training, generation and the GRPO update.

No weights are downloaded: for each model shape the script builds a randomly initialised Llama of
that shape (the layers of SmolLM2-135M, SmolLM2-1.7B or Llama-3.1-8B) with a real chat tokenizer,
saves it, and runs the project's own code on it. Random weights cost exactly what trained ones
cost per token (same matrices, same lengths: training reads fixed examples; generation is held to
its full answer length, since random weights never stop early), so speed and memory carry over;
what they cannot show is learning, which the CPU tests and runs do.

For each shape:
  train     train.py itself (a subprocess): LoRA r=16 on every linear layer, --batch 8, bf16
            autocast, on expert.jsonl's examples; steady tokens/s (steps after the first 3, where
            CUDA is warm) and peak GPU memory (loss.jsonl's peak_gb).
  generate  agent.generate: 64 states of expert.jsonl, greedy, 24 new tokens each (collect.py's and
            evaluate.py's answer cap), batch 64, after a full-size warm-up, median of 3; generated
            tokens/s and peak memory.
  grpo      rl.update: one GRPO update (KL to the start policy on, micro-batch 8) over 16 episodes of
            4 steps whose answers are the sampled ids above, with spread rewards; seconds and peak memory.
  adapter   (shapes up to 1.7b) the train checkpoint loaded by models.load_model in bf16 (adapter kept
            apart) and fp32 (merged): max |logit difference|; and the same adapter merged into bf16
            weights, which rounds the update away (bench/merge_rounding.py measures it on CPU);
            and greedy generation through the checkpoint, adapter in bf16 (load_model) against
            peft's default fp32 upcast, side by side (bench/adapter_dtype.py measures it on CPU).

Inputs:  --data expert.jsonl (collect.py), --tokenizer a model folder (default: the embedded model's)
Outputs: --out JSONL (one row per shape and check), a rich table

  python bench/cuda_check.py --data runs/default/expert.jsonl --shapes 135m 1.7b 8b --out results/bench/cuda_check.jsonl
  python bench/cuda_check.py --data runs/default/expert.jsonl --shapes tiny --steps 4 --out /tmp/cuda_check.jsonl  # a CPU dry run
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import peft
import torch
import transformers
from peft import PeftModel
from rich.console import Console
from rich.table import Table
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile
from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

import agent
import chat
import common  # noqa: E402
import models
import rl
import train

# Layer shapes of released chat models (their vocabularies are replaced by the tokenizer's: 49,152
# words for SmolLM2's, so "8b" here is Llama-3.1-8B's 32 layers with a smaller embedding, 7.5 B).
SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, tie_word_embeddings=True),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                 num_key_value_heads=32, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, tie_word_embeddings=False),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="expert.jsonl from collect.py (training examples and states)")
    p.add_argument("--tokenizer", default=None, help="folder with a chat tokenizer (default: the embedded model's)")
    p.add_argument("--shapes", nargs="+", default=["135m", "1.7b", "8b"], choices=sorted(SHAPES), help="model shapes")
    p.add_argument("--steps", type=int, default=12, help="train.py optimizer steps per shape")
    p.add_argument("--states", type=int, default=64, help="states generated from in one batch")
    p.add_argument("--new-tokens", type=int, default=24, help="generated tokens per state")
    p.add_argument("--work", default=None, help="scratch folder for weights and checkpoints (default: a temp folder)")
    p.add_argument("--profile", action="store_true", help="also time the parts of a training step and of generation "
                   "(ours vs plain generate) for the first shape, and write torch.profiler tables next to --out")
    p.add_argument("--out", required=True, help="JSONL of results (appended row by row)")
    return p.parse_args(argv)


def gpu_gb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else float("nan")


def reset_peak() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build(shape: str, tokenizer: str, out: Path) -> int:
    """A random Llama of this shape in bf16, saved with the tokenizer; returns its parameter count."""
    tok = AutoTokenizer.from_pretrained(tokenizer)
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=8192, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **SHAPES[shape])
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # initialise in bf16 on the GPU: an 8B fp32 copy is 30 GB
    try:
        with torch.device(models.default_device()):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    reset_peak()
    return n


def train_check(model_dir: Path, data: str, steps: int, out: Path) -> dict:
    t0 = time.time()
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--model", str(model_dir), "--data", data,
                        "--steps", str(steps), "--batch", "8", "--out", str(out)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"train.py failed:\n{r.stderr[-3000:]}")
    log = [json.loads(x) for x in (out / "loss.jsonl").read_text().splitlines()]
    # loss.jsonl's tokens_per_s is cumulative: elapsed time at step k = tokens so far / rate
    elapsed = [sum(x["tokens"] for x in log[: i + 1]) / log[i]["tokens_per_s"] for i in range(len(log))]
    warm = min(3, len(log) // 2)
    steady = sum(x["tokens"] for x in log[warm + 1:]) / max(1e-9, elapsed[-1] - elapsed[warm])
    return {"tokens_per_s": round(steady, 1), "peak_gb": log[-1].get("peak_gb", float("nan")),
            "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"], "wall_s": round(time.time() - t0, 1)}


def states(data: str, n: int) -> list[list[dict]]:
    rows = common.read_jsonl(data)
    step = max(1, len(rows) // n)
    return [[m for m in r["messages"] if m["role"] != "assistant"] for r in rows[::step][:n]]


def generate_check(model_dir: Path, chats: list, new_tokens: int) -> tuple[dict, list]:
    model, tok = models.load_model(str(model_dir))
    model.eval()
    # a full-size warm-up: the first call at a new batch shape picks and loads its kernels (on the
    # first run of this script that alone made 135M look 4x slower)
    agent.generate(model, tok, chats, max_new_tokens=new_tokens, batch_size=len(chats))
    reset_peak()
    times = []
    for _ in range(3):
        sync()
        t0 = time.time()
        out = agent.generate(model, tok, chats, max_new_tokens=new_tokens, batch_size=len(chats), return_ids=True)
        sync()
        times.append(time.time() - t0)
    took = sorted(times)[1]  # the median of 3
    n = sum(len(ids) for _, ids in out)
    del model
    return {"tokens_per_s": round(n / took, 1), "generated": n, "seconds": round(took, 2), "peak_gb": gpu_gb()}, out


def grpo_check(ckpt: Path, chats: list, answers: list) -> dict:
    """One rl.update over 16 episodes x 4 steps built from real states and sampled answer ids."""
    args = SimpleNamespace(init=str(ckpt), full=False, dtype="auto", lora_r=16, seed=0, reward="score",
                           invalid_penalty=0.0, kl=0.05, micro_batch=8, clip=0.2, inner_epochs=1,
                           norm="episode", lr=1e-5)
    reset_peak()
    model, tok = rl.build_policy(args)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    rng = random.Random(0)
    episodes = []
    for e in range(16):
        traj = [{"messages": chats[(4 * e + s) % len(chats)], "answer_ids": answers[(4 * e + s) % len(answers)][1]}
                for s in range(4)]
        episodes.append({"task_id": f"t{e // 8}#{e % 8}", "trajectory": traj, "success": False,
                         "score": rng.random(), "invalid": 0, "steps": 4})
    device = next(model.parameters()).device
    sync()
    t0 = time.time()
    stats = rl.update(model, tok, opt, episodes, args, device)
    sync()
    took = time.time() - t0
    del model, opt
    return {"seconds": round(took, 2), "records": stats["steps"], "tokens": stats.get("tokens", 0),
            "kl": round(stats["kl"], 6), "peak_gb": gpu_gb()}


def adapter_check(ckpt: Path, chats: list) -> dict:
    """Logits of the trained checkpoint three ways: bf16 with the adapter apart (what load_model
    does), fp32 merged (the reference), bf16 merged (what it did before)."""
    tok = models._load_tokenizer(str(ckpt))
    rows = [{"ids": tok(chat.render(tok, c, add_generation_prompt=True), add_special_tokens=False)["input_ids"][-256:]}
            for c in chats[:8]]
    for r in rows:
        r["labels"] = [chat.IGNORE] + r["ids"][1:]

    def logits(model):
        ids, _, mask = chat.collate(rows, tok.pad_token_id, model.device)
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).logits.float()[mask.bool()].cpu()

    ref = logits(models.load_model(str(ckpt), dtype="fp32")[0])
    apart = logits(models.load_model(str(ckpt))[0])
    base_name = json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"]
    base, _ = models.load_model(base_name)
    merged = logits(PeftModel.from_pretrained(base, str(ckpt)).merge_and_unload())
    base_logits = logits(models.load_model(base_name)[0])
    update = (ref - base_logits).abs().mean().item()  # how far the adapter moves the logits
    gc.collect()
    return {"update_mean_abs": round(update, 5),
            "bf16_apart_err": round((apart - ref).abs().mean().item(), 5),
            "bf16_merged_err": round((merged - ref).abs().mean().item(), 5)}


def adapter_speed(ckpt: Path, chats: list, new_tokens: int) -> dict:
    """Generated tokens/s through the checkpoint with its adapter in bf16 (models.load_model) and in
    fp32 (peft's default: every adapted layer casts its input up and back), the two ways alternating
    after a full-size warm-up each, median of 3."""
    base_name = json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"]
    bf16, tok = models.load_model(str(ckpt))
    fp32 = PeftModel.from_pretrained(models.load_model(base_name)[0], str(ckpt))  # autocast_adapter_dtype=True
    ways = {"bf16_adapter": bf16.eval(), "fp32_adapter": fp32.eval()}
    times = {k: [] for k in ways}
    for m in ways.values():
        agent.generate(m, tok, chats, max_new_tokens=new_tokens, batch_size=len(chats))
    for _ in range(3):
        for k, m in ways.items():
            sync()
            t0 = time.time()
            out = agent.generate(m, tok, chats, max_new_tokens=new_tokens, batch_size=len(chats), return_ids=True)
            sync()
            times[k].append((time.time() - t0, sum(len(ids) for _, ids in out)))
    res = {}
    for k, v in times.items():
        took, n = sorted(v)[1]
        res[f"{k}_tokens_per_s"] = round(n / took, 1)
    res["speedup"] = round(res["bf16_adapter_tokens_per_s"] / res["fp32_adapter_tokens_per_s"], 2)
    del bf16, fp32, ways
    gc.collect()
    return res


def profile(model_dir: Path, data: str, chats: list, new_tokens: int, out: Path) -> dict:
    """Where a step's time goes: collate / forward / backward / optimizer of train.py's loop, and
    agent.generate against a plain model.generate on the same left-padded batch."""
    targs = train.parse_args(["--model", str(model_dir), "--data", data, "--out", str(out.parent / "unused")])
    model, tok, _ = train.build_model(targs)
    examples = train.load_examples(tok, [data], targs.max_len)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    autocast = torch.autocast(device_type=model.device.type, dtype=torch.bfloat16)
    rng = random.Random(0)
    parts = {"collate": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}

    def step(timed: bool):
        batch = [examples[i] for i in train.length_grouped_batches(examples, 8, rng)[0]]
        marks = [time.time()]
        ids, labels, mask = chat.collate(batch, tok.pad_token_id, model.device)
        sync(); marks.append(time.time())
        with autocast:
            loss = train.sft_loss_sum(model, ids, mask, labels) / max(1, int((labels != chat.IGNORE).sum()))
        sync(); marks.append(time.time())
        loss.backward()
        sync(); marks.append(time.time())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(); marks.append(time.time())
        if timed:
            for k, a, b in zip(parts, marks, marks[1:]):
                parts[k] += (b - a) / 8

    model.train()
    for _ in range(3):
        step(False)
    for _ in range(8):
        step(True)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=acts) as prof:
        step(False)
    tables = ["== one training step, by self CPU time ==",
              prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)]
    del model, opt
    reset_peak()
    model, tok = models.load_model(str(model_dir))
    model.eval()

    cfg = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                           eos_token_id=chat.stop_token_ids(tok), min_new_tokens=new_tokens)
    enc = tok([chat.render(tok, c, add_generation_prompt=True) for c in chats], add_special_tokens=False,
              return_tensors="pt", padding=True).to(model.device)

    def plain():
        with torch.no_grad():
            model.generate(**enc, generation_config=cfg)

    def ours():
        agent.generate(model, tok, chats, max_new_tokens=new_tokens, batch_size=len(chats))

    ways = {"generate_ours_s": ours, "generate_plain_s": plain}
    for f in ways.values():
        f()  # warm-up
    times = {k: [] for k in ways}
    for _ in range(3):
        for k, f in ways.items():
            sync(); t0 = time.time(); f(); sync()
            times[k].append(time.time() - t0)
    with torch_profile(activities=acts) as prof:
        ours()
    tables += ["== agent.generate, by self CPU time ==",
               prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)]
    (out.parent / (out.stem + "_profile.txt")).write_text("\n".join(tables))
    del model
    reset_peak()
    return {"train_step_parts_s": {k: round(v, 4) for k, v in parts.items()},
            **{k: round(sorted(v)[1], 3) for k, v in times.items()}, "states": len(chats), "new_tokens": new_tokens}


def main(argv=None):
    args = parse_args(argv)
    args.tokenizer = args.tokenizer or str(models.embedded_model_dir())
    work = Path(args.work or tempfile.mkdtemp(prefix="cuda-check-"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    env = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
           "peft": peft.__version__, "python": platform.python_version()}
    print(json.dumps(env))
    common.append_jsonl(out, {"check": "environment", **env})
    chats = states(args.data, args.states)
    table = Table(title=f"CUDA path on {device}")
    for col in ("shape", "params", "train tok/s", "train GB", "loss", "gen tok/s", "gen GB", "grpo s", "grpo GB", "adapter err (apart / merged) / update",
                "adapted gen tok/s (bf16 / fp32 adapter)"):
        table.add_column(col)
    for shape in args.shapes:
        d = work / shape
        t0 = time.time()
        n = build(shape, args.tokenizer, d)
        row = {"check": "shape", "shape": shape, "params": n, "build_s": round(time.time() - t0, 1), "device": device}
        print(f"[{shape}] {n / 1e6:.0f} M parameters, built and saved in {row['build_s']} s", flush=True)
        if args.profile and shape == args.shapes[0]:
            row["profile"] = profile(d, args.data, chats, args.new_tokens, out)
            print(f"[{shape}] profile {row['profile']}", flush=True)
        row["train"] = train_check(d, args.data, args.steps, work / f"ckpt-{shape}")
        print(f"[{shape}] train {row['train']}", flush=True)
        row["generate"], answers = generate_check(d, chats, args.new_tokens)
        print(f"[{shape}] generate {row['generate']}", flush=True)
        row["grpo"] = grpo_check(work / f"ckpt-{shape}", chats, answers)
        print(f"[{shape}] grpo {row['grpo']}", flush=True)
        if n < 3e9:
            row["adapter"] = adapter_check(work / f"ckpt-{shape}", chats)
            print(f"[{shape}] adapter {row['adapter']}", flush=True)
            row["adapter_speed"] = adapter_speed(work / f"ckpt-{shape}", chats, args.new_tokens)
            print(f"[{shape}] adapter_speed {row['adapter_speed']}", flush=True)
        common.append_jsonl(out, row)
        a, sp = row.get("adapter"), row.get("adapter_speed")
        table.add_row(shape, f"{n / 1e6:.0f} M", f"{row['train']['tokens_per_s']:.0f}", f"{row['train']['peak_gb']}",
                      f"{row['train']['first_loss']:.2f} -> {row['train']['last_loss']:.2f}",
                      f"{row['generate']['tokens_per_s']:.0f}", f"{row['generate']['peak_gb']}",
                      f"{row['grpo']['seconds']}", f"{row['grpo']['peak_gb']}",
                      f"{a['bf16_apart_err']} / {a['bf16_merged_err']} / {a['update_mean_abs']}" if a else "-",
                      f"{sp['bf16_adapter_tokens_per_s']:.0f} / {sp['fp32_adapter_tokens_per_s']:.0f}" if sp else "-")
        shutil.rmtree(d, ignore_errors=True)  # an 8B copy is 15 GB of disk
    Console(width=200).print(table)


if __name__ == "__main__":
    common.run_main(main)

"""Training tokens/s and peak memory: train.py vs TRL's SFTTrainer, the same work side by side.

Same model (bf16 base weights), same data (a chat JSONL from collect.py), LoRA r=16 alpha=32 on
every linear layer, batch 8, max length 1024, bf16 autocast, loss on the assistant tokens only,
the same number of optimizer steps and torch threads. Each trial runs in a fresh process (peak
memory = that process's maximum resident set); the two trainers alternate --repeats times and
the medians are reported with their ratio. TRL is a benchmark-only dependency (pip install trl).

What differs, on purpose (it is what the comparison measures):
  train.py   language-model head only at target positions; length-grouped batches; plain
             matmul attention on CPU (faster backward than PyTorch's CPU flash kernel).
  TRL        SFTTrainer defaults (prompt-completion data, completion-only loss, full logits,
             random batches), except gradient checkpointing, which SFTConfig turns on by default
             and we turn off (it trades speed for memory; neither run needs the memory).

  python bench/train_speed.py --data runs/default/expert.jsonl --steps 8 --repeats 3
  python bench/train_speed.py --data runs/default/expert.jsonl --steps 8 --repeats 2 --with-sdpa
  python bench/train_speed.py --data runs/default/expert.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --steps 20
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch
from datasets import Dataset
from peft import LoraConfig
from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

import common  # noqa: E402
import models
import train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="chat JSONL (expert.jsonl from collect.py)")
    p.add_argument("--model", default=models.EMBEDDED, help="base model")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per trial")
    p.add_argument("--batch", type=int, default=8, help="examples per step")
    p.add_argument("--repeats", type=int, default=3, help="alternations of the two trainers")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--with-sdpa", action="store_true",
                   help="also run train.py with --attn sdpa (PyTorch's fused attention) to measure that choice")
    p.add_argument("--worker", choices=["ours", "ours-sdpa", "trl"], default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_ours(args, out: Path, attn: str = "auto") -> dict:
    train.main(["--attn", attn, "--model", args.model, "--data", args.data, "--steps", str(args.steps), "--batch", str(args.batch),
                "--threads", str(args.threads), "--warmup", "0.05", "--out", str(out / "ckpt")])
    log = common.read_jsonl(out / "ckpt" / "loss.jsonl")
    return {"tokens_per_s": log[-1]["tokens_per_s"], "final_loss": log[-1]["loss"]}


def run_trl(args, out: Path) -> dict:
    common.set_threads(args.threads)
    model, tok = models.load_model(args.model, dtype="auto")
    rows = common.read_jsonl(args.data)
    ds = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows])
    times = {}

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            times["start"] = time.time()

        def on_train_end(self, *a, **k):
            times["end"] = time.time()

    cfg = SFTConfig(output_dir=str(out / "trl"), max_steps=args.steps, per_device_train_batch_size=args.batch,
                    learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.0,
                    max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to="none", bf16=True,
                    use_cpu=not torch.cuda.is_available(), max_length=1024, seed=0, dataloader_num_workers=0,
                    gradient_checkpointing=False, include_num_input_tokens_seen="non_padding",
                    disable_tqdm=True)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lora,
                         callbacks=[Timer()])
    trainer.train()
    seconds = times["end"] - times["start"]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens_per_s": round(trainer.state.num_input_tokens_seen / seconds, 1), "final_loss": losses[-1]}


def main(argv=None):
    args = parse_args(argv)
    if args.worker:  # one trial in this process; the parent reads the last line
        with tempfile.TemporaryDirectory() as tmp:
            if args.worker == "trl":
                res = run_trl(args, Path(tmp))
            else:
                res = run_ours(args, Path(tmp), "sdpa" if args.worker == "ours-sdpa" else "auto")
        res["peak_rss_mb"] = round(peak_mb())
        print(json.dumps(res))
        return

    ways = [("train.py", "ours"), ("TRL SFTTrainer", "trl")] + ([("train.py --attn sdpa", "ours-sdpa")] if args.with_sdpa else [])
    results = {name: [] for name, _ in ways}
    base = [sys.executable, str(Path(__file__).resolve()), "--data", args.data, "--model", args.model,
            "--steps", str(args.steps), "--batch", str(args.batch), "--threads", str(args.threads)]
    for r in range(args.repeats):
        for name, worker in ways:
            proc = subprocess.run(base + ["--worker", worker], capture_output=True, text=True, cwd=ROOT,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            if proc.returncode:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results[name].append(res)
            print(f"repeat {r} {name}: {res}", flush=True)
    table = Table(title=f"training, {args.model}, {args.steps} steps x batch {args.batch}, threads={args.threads or 'all'}")
    for c in ("trainer", "median tokens/s", "median peak RSS (MB)", "final loss (first trial)"):
        table.add_column(c)
    med = {}
    for name, runs in results.items():
        med[name] = statistics.median(x["tokens_per_s"] for x in runs)
        table.add_row(name, f"{med[name]:.1f}", f"{statistics.median(x['peak_rss_mb'] for x in runs):.0f}",
                      f"{runs[0]['final_loss']:.3f}")
    Console().print(table)
    print(f"ratio train.py / TRL (tokens/s): {med['train.py'] / med['TRL SFTTrainer']:.2f}x")
    if args.with_sdpa:
        print(f"ratio train.py (eager on CPU) / train.py --attn sdpa (tokens/s): {med['train.py'] / med['train.py --attn sdpa']:.2f}x")


if __name__ == "__main__":
    main()

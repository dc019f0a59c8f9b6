"""bf16 vs fp32 on this CPU: why `--dtype auto` asks the processor before it picks bf16.

On a CPU with native bf16 instructions (AVX-512-BF16 or AMX), PyTorch runs bf16 matrix products
through oneDNN's native kernels and bf16 is the fast choice (2x for LoRA training, 2.5-3x for
generation: docs/benchmarks.md). On a CPU without them the same products are emulated: ~4x slower
than fp32 on plain AVX-512 (an Intel Xeon without AVX-512-BF16), ~100x on AVX2 only (an AMD EPYC
Milan), so a run that takes minutes in fp32 takes hours in bf16. models.fast_bf16 reads the CPU's
flags (oneDNN's own check says "supported" wherever it can emulate); this script measures what that choice is worth here, side by side in
one process (the two dtypes alternate --repeats times; medians and their ratio are reported):

  matmul     one MLP product of the embedded model's shape (tokens x 576 @ 576 x 1536), GFLOP/s
  train      one LoRA training step of the embedded model (r=16 on every linear layer, train.py's
             loss and autocast for that dtype) on --tokens tokens, tokens/s
  generate   greedy answers of --new-tokens tokens to one ~100-token chat (agent.generate), tokens/s

Sizes are small on purpose: on a CPU without fast bf16 the bf16 side runs at ~1 GFLOP/s.

  python bench/cpu_dtype.py
  python bench/cpu_dtype.py --threads 1 --repeats 3 --out results/bench/cpu_dtype_avx2.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from peft import LoraConfig, get_peft_model
from rich.console import Console
from rich.table import Table

import agent
import common  # noqa: E402
import models


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=models.EMBEDDED, help="model (its shapes set the matmul size)")
    p.add_argument("--tokens", type=int, default=128, help="tokens per matmul and per training step")
    p.add_argument("--new-tokens", type=int, default=8, help="generated tokens per generation trial")
    p.add_argument("--repeats", type=int, default=2, help="alternations of the two dtypes")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--out", default=None, help="write the measurements as JSON here")
    return p.parse_args(argv)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_matmul(dtype, tokens, d_in, d_out):
    a, b = torch.randn(tokens, d_in, dtype=dtype), torch.randn(d_in, d_out, dtype=dtype)
    a @ b  # warm-up
    n, t = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t < 1.0:
        a @ b
        n += 1
    return 2 * tokens * d_in * d_out * n / (time.perf_counter() - t) / 1e9


def time_train_step(model, tokens):
    """One forward + backward of the LoRA model on `tokens` random tokens, in train.py's autocast."""
    ids = torch.randint(0, model.config.vocab_size, (1, tokens))
    with models.train_autocast(model):
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return tokens / (time.perf_counter() - t)


def time_generate(model, tok, new_tokens):
    chat = [{"role": "system", "content": "You are playing a text game. Answer with one action."},
            {"role": "user", "content": "You are in a kitchen. You see a fridge, a counter with a knife "
             "and a cookbook, and a stove. The cookbook says: slice the yellow potato, fry it, then "
             "prepare the meal and eat it. What do you do next?"}]
    t = time.perf_counter()
    agent.generate(model, tok, [chat], max_new_tokens=new_tokens, temperature=0.0)
    return new_tokens / (time.perf_counter() - t)


def main(argv=None):
    args = parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    models = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m, tok = models.load_model(args.model, dtype=name, device="cpu")
        models[name] = (get_peft_model(m, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")), tok, dt)
    cfg = models["fp32"][0].config
    rows = {(what, name): [] for what in ("matmul", "train", "generate") for name in models}
    for r in range(args.repeats):
        for name, (m, tok, dt) in models.items():
            rows[("matmul", name)].append(time_matmul(dt, args.tokens, cfg.hidden_size, cfg.intermediate_size))
            m.train()
            rows[("train", name)].append(time_train_step(m, args.tokens))
            m.eval()
            with m.disable_adapter():
                rows[("generate", name)].append(time_generate(m, tok, args.new_tokens))
    result = {"cpu": cpu_name(), "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability(),
              "fast_bf16": models.fast_bf16("cpu"), "auto_picks": str(models.resolve_dtype("auto", "cpu")),
              "threads": torch.get_num_threads(), "tokens": args.tokens, "repeats": args.repeats, "rows": []}

    table = Table(title=f"{result['cpu']} ({result['capability']}, fast bf16: {result['fast_bf16']}, "
                        f"auto = {result['auto_picks']})")
    for col in ("what", "unit", "fp32", "bf16", "fp32 / bf16"):
        table.add_column(col)
    for what, unit in (("matmul", "GFLOP/s"), ("train", "tokens/s"), ("generate", "tokens/s")):
        f, b = statistics.median(rows[(what, "fp32")]), statistics.median(rows[(what, "bf16")])
        result["rows"].append({"what": what, "unit": unit, "fp32": round(f, 2), "bf16": round(b, 2),
                               "ratio_fp32_over_bf16": round(f / b, 2)})
        table.add_row(what, unit, f"{f:.1f}", f"{b:.1f}", f"{f / b:.2f}x")
    Console().print(table)
    if args.out:
        common.save_args(args, Path(args.out).parent, Path(args.out).stem + ".args.json")
        common.write_atomic(args.out, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

"""Evaluating a LoRA checkpoint in bf16: the adapter in fp32 (peft's default upcast) or in bf16?

models.load_model keeps a checkpoint's adapter apart from the bf16 base (merging would round most
of the update away: bench/merge_rounding.py). peft then upcasts the adapter to fp32 by default, so
every adapted layer (210 in SmolLM2-135M) casts its input to fp32 and back for a rank-16 product on
every token. Training computed that product in bf16 (autocast), so a bf16 adapter is also what the
model was trained as. This measures, side by side in one run (the ways alternate, median of the
repeats), greedy generation over the same states:
  fp32-adapter   PeftModel.from_pretrained(bf16 base, ckpt)                   (peft's default)
  bf16-adapter   the same with autocast_adapter_dtype=False
  bf16-merged    the adapter merged into the bf16 weights (speed reference only: wrong model)
and, for each way, how many answers equal those of the exact model (fp32 base, adapter merged in fp32).

  python bench/adapter_dtype.py runs/default/ckpt/il-s0
  python bench/adapter_dtype.py runs/compare/ckpt/sr-s0 --states 40 --repeats 3
Output: the table on stdout; results/bench/adapter_dtype.txt with --save.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from peft import PeftModel

import agent
import common  # noqa: E402
import models
import prompts  # noqa: E402


def load(ckpt: str, way: str):
    if way == "exact":
        return models.load_model(ckpt, dtype="fp32")  # merged in fp32
    base_name = json.loads((Path(ckpt) / "adapter_config.json").read_text())["base_model_name_or_path"]
    base, _ = models.load_model(base_name, dtype="bf16")
    tok = models._load_tokenizer(ckpt)
    model = PeftModel.from_pretrained(base, ckpt, autocast_adapter_dtype=(way == "fp32-adapter"))
    if way == "bf16-merged":
        model = model.merge_and_unload()
    dtypes = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
    assert way == "bf16-merged" or dtypes == {torch.float32 if way == "fp32-adapter" else torch.bfloat16}, dtypes
    return model.eval(), tok


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a LoRA checkpoint folder written by train.py")
    p.add_argument("--data", default=None, help="states to answer (default: expert.jsonl next to ckpt/)")
    p.add_argument("--states", type=int, default=40, help="states, answered in one batch")
    p.add_argument("--tokens", type=int, default=24, help="answer length cap (evaluate.py's default)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per way (median)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--save", action="store_true", help="also write results/bench/adapter_dtype.txt")
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    data = Path(args.data) if args.data else Path(args.checkpoint).parent.parent / "expert.jsonl"
    chats = [prompts.policy_messages(r["state"]) for r in common.read_jsonl(data)[: args.states]]
    gen = lambda m, t: agent.generate(m, t, chats, max_new_tokens=args.tokens, batch_size=len(chats))  # noqa: E731

    exact = gen(*load(args.checkpoint, "exact"))
    ways = ["fp32-adapter", "bf16-adapter", "bf16-merged"]
    models = {w: load(args.checkpoint, w) for w in ways}
    answers = {w: gen(*models[w]) for w in ways}  # also the warm-up
    secs = {w: [] for w in ways}
    for _ in range(args.repeats):
        for w in ways:
            t = time.perf_counter()
            gen(*models[w])
            secs[w].append(time.perf_counter() - t)
    lines = [f"{args.checkpoint}: {len(chats)} states of {data.name}, one batch, greedy, {args.tokens} new tokens, "
             f"{torch.get_num_threads()} threads, median of {args.repeats}",
             f"{'way':<14}{'seconds':>9}{'vs fp32-adapter':>17}{'answers = exact model':>23}"]
    ref = statistics.median(secs["fp32-adapter"])
    for w in ways:
        s = statistics.median(secs[w])
        same = sum(a == b for a, b in zip(answers[w], exact))
        lines.append(f"{w:<14}{s:>9.2f}{ref / s:>16.2f}x{same:>17} / {len(chats)}")
    print("\n".join(lines))
    if args.save:
        out = Path(__file__).resolve().parent.parent / "results" / "bench" / "adapter_dtype.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

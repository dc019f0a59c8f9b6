"""collect.py's policy proposals: K sampled answers for each of S states, three ways, side by side.

  shared prefill        agent.generate(num_samples=K): each prompt read once, its key/value cache
                        repeated K times (what collect.py does)
  num_return_sequences  Hugging Face's own way: every prompt copied K times before reading it
  one at a time         a plain loop: one generate call per (state, sample)

Same model, states, K, temperature and answer cap; the ways alternate --repeats times, medians
reported. tokens/s counts generated answer tokens (stop token included).

  python bench/proposals.py --data runs/default/expert.jsonl --states 16 --k 4 --repeats 3
  python bench/proposals.py --data runs/default/expert.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --states 32
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from rich.console import Console
from rich.table import Table

import agent
import chat
import common  # noqa: E402
import models
import prompts  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="expert.jsonl from collect.py (its states are the prompts)")
    p.add_argument("--model", default=models.EMBEDDED, help="the proposing policy")
    p.add_argument("--states", type=int, default=16, help="states (prompts), taken evenly from the file")
    p.add_argument("--k", type=int, default=4, help="samples per state")
    p.add_argument("--max-new-tokens", type=int, default=24, help="answer cap (collect.py's default)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--repeats", type=int, default=3, help="alternations")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="auto (bf16), bf16, fp32")
    return p.parse_args(argv)


def hf_generate(model, tok, chats, k, cfg_kwargs):
    """Hugging Face's num_return_sequences over a left-padded batch of prompts."""
    texts = [chat.render(tok, c, add_generation_prompt=True) for c in chats]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.no_grad():
        gen = model.generate(**enc, num_return_sequences=k, **cfg_kwargs)
    return tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def main(argv=None):
    args = parse_args(argv)
    common.set_threads(args.threads)
    model, tok = models.load_model(args.model, dtype=args.dtype)
    model.eval()
    rows = common.read_jsonl(args.data)
    step = max(1, len(rows) // args.states)
    chats = [prompts.policy_messages(r["state"]) for r in rows[::step][: args.states]]
    cfg = dict(max_new_tokens=args.max_new_tokens, do_sample=True, temperature=args.temperature, top_p=None,
               top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=chat.stop_token_ids(tok))

    def count(answers):
        return sum(len(tok(a, add_special_tokens=False)["input_ids"]) + 1 for a in answers)

    ways = {
        "shared prefill": lambda: [a for per in agent.generate(model, tok, chats, max_new_tokens=args.max_new_tokens,
                                                                temperature=args.temperature, num_samples=args.k,
                                                                batch_size=len(chats)) for a in per],
        "num_return_sequences": lambda: hf_generate(model, tok, chats, args.k, cfg),
        "one at a time": lambda: [a for c in chats for _ in range(args.k) for a in hf_generate(model, tok, [c], 1, cfg)],
    }
    res = {name: [] for name in ways}
    for r in range(args.repeats):
        for name, fn in ways.items():
            common.set_seed(r)
            t = time.time()
            answers = fn()
            s = time.time() - t
            res[name].append((s, count(answers)))
            print(f"repeat {r} {name}: {s:.1f} s, {len(answers)} answers, {res[name][-1][1] / s:.1f} tokens/s", flush=True)
    table = Table(title=f"proposals: {args.states} states x K={args.k}, {args.model} {args.dtype}, threads={args.threads or 'all'}")
    for c in ("way", "median s", "median tokens/s", "vs shared prefill"):
        table.add_column(c)
    rate = {n: statistics.median(tk / s for s, tk in runs) for n, runs in res.items()}
    for name, runs in res.items():
        table.add_row(name, f"{statistics.median(s for s, _ in runs):.1f}", f"{rate[name]:.1f}",
                      f"{rate['shared prefill'] / rate[name]:.2f}x")
    Console().print(table)
    for name in ("num_return_sequences", "one at a time"):
        print(f"ratio shared prefill / {name} (tokens/s): {rate['shared prefill'] / rate[name]:.2f}x")


if __name__ == "__main__":
    main()

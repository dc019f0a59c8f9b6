"""How close each stage runs to what the hardware allows: FLOPs per token x tokens/s, against the
matmul throughput torch reaches here in the same precision.

Measured in one process: the matmul peak (the model's own shapes), then prompt reading (prefill,
what evaluation, collection and reflection mostly do), answer writing (decode, one token per row
per step), and a LoRA training step (train.py's loss on real examples). FLOPs per token:
  forward  2 x (non-embedding parameters) + 2 x layers x context x hidden (causal attention)
  LoRA training  2 x forward (the backward pass computes input gradients through the frozen
                 weights, as many FLOPs as the forward; the adapters' own are negligible)
Decode is limited by reading the weights from memory, not by arithmetic: its fraction is low by nature.

  python bench/limits.py --data runs/default/expert.jsonl
  python bench/limits.py --data runs/default/expert.jsonl --dtype fp32
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from rich.console import Console
from rich.table import Table

import chat
import common  # noqa: E402
import models
import train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="expert.jsonl from collect.py (real prompt lengths)")
    p.add_argument("--model", default=models.EMBEDDED, help="model")
    p.add_argument("--batch", type=int, default=16, help="rows per forward")
    p.add_argument("--dtype", default="auto", help="auto (bf16), bf16, fp32")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    return p.parse_args(argv)


def timed(fn, repeats=3):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main(argv=None):
    args = parse_args(argv)
    common.set_threads(args.threads)
    dt = models.resolve_dtype(args.dtype, "cpu" if not torch.cuda.is_available() else "cuda")
    model, tok = models.load_model(args.model, dtype=args.dtype)
    model.eval()
    cfg = model.config
    dev = model.device
    emb = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" in n)
    params = sum(p.numel() for p in model.parameters()) - emb  # tied head: counted once, as embedding

    # 1. the matmul peak, at the model's shapes (tokens x hidden @ hidden x intermediate)
    a = torch.randn(args.batch * 256, cfg.hidden_size, dtype=dt, device=dev)
    b = torch.randn(cfg.hidden_size, cfg.intermediate_size, dtype=dt, device=dev)
    peak = 2 * a.shape[0] * a.shape[1] * b.shape[1] / timed(lambda: a @ b, 10)

    rows = common.read_jsonl(args.data)
    examples = train.load_examples(tok, [args.data], 1024)
    ctx = sum(len(e["ids"]) for e in examples) / len(examples)
    fwd = 2 * params + 2 * cfg.num_hidden_layers * ctx * cfg.hidden_size
    chats = [chat.render(tok, r["messages"][:-1], add_generation_prompt=True) for r in rows[: args.batch]]
    enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
    real = int(enc["attention_mask"].sum())

    # 2. prefill: read a batch of real prompts (only the last position's logits, as generate does)
    with torch.no_grad():
        s_prefill = timed(lambda: model(**enc, logits_to_keep=1))
        # 3. decode: one new token per row with a cache of the prompt
        out = model(**enc, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([enc["attention_mask"], torch.ones_like(nxt)], 1)
        cache = out.cache

        def decode():
            model(input_ids=nxt, attention_mask=mask, cache=cache, use_cache=True)
            cache.crop(-1)  # drop the token just added: every call sees the same context
        s_decode = timed(decode, 10)

    # 4. a LoRA training step on real examples (train.py's model, loss and batching)
    targs = train.parse_args(["--model", args.model, "--dtype", args.dtype, "--data", args.data, "--out", "unused"])
    tmodel, _, _ = train.build_model(targs)
    tmodel.train()
    batches = train.length_grouped_batches(examples, 8, random.Random(0))
    opt = torch.optim.AdamW([p for p in tmodel.parameters() if p.requires_grad], lr=1e-4)
    seen = {"tokens": 0, "steps": 0}

    def step():
        ids, labels, m = chat.collate([examples[i] for i in batches[seen["steps"] % len(batches)]], tok.pad_token_id, dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
            loss = train.sft_loss_sum(tmodel, ids, m, labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        seen["tokens"] += int(m.sum())
        seen["steps"] += 1
    t = time.perf_counter()
    for _ in range(4):
        step()
    s_train = time.perf_counter() - t
    train_rate = seen["tokens"] / s_train

    table = Table(title=f"{args.model}, {dt}, threads={torch.get_num_threads()}, matmul peak {peak / 1e9:.0f} GFLOP/s")
    for c in ("stage", "tokens/s", "GFLOP per token", "achieved GFLOP/s", "fraction of matmul peak"):
        table.add_column(c)
    for name, rate, flops in (("prefill (read prompts)", real / s_prefill, fwd),
                              ("decode (write answers)", args.batch / s_decode, fwd),
                              ("LoRA training", train_rate, 2 * fwd)):
        table.add_row(name, f"{rate:.0f}", f"{flops / 1e9:.3f}", f"{rate * flops / 1e9:.0f}", f"{rate * flops / peak:.0%}")
    Console().print(table)
    print(f"non-embedding parameters {params / 1e6:.1f} M, mean example length {ctx:.0f} tokens")


if __name__ == "__main__":
    main()

"""Episodes/s and generated tokens/s of evaluate.py's batched loop vs one episode at a time.

Same model, same episodes, same greedy decoding, in one run; the two ways alternate --repeats
times and the medians are reported with their ratio.

  python bench/eval_throughput.py --model smollm2-135m --episodes 16 --batch 16 --repeats 2
  python bench/eval_throughput.py --model smollm2-135m --dtype fp32 --episodes 8 --batch 8
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

import agent
import common  # noqa: E402
import envs  # noqa: E402
import models


def play(model, tok, env_name, tasks, batch, max_steps, max_new_tokens):
    t = time.time()
    eps = []
    for start in range(0, len(tasks), batch):
        eps += list(agent.run_episodes(model, tok, env_name, tasks[start: start + batch], batch=batch,
                                        max_steps=max_steps, max_new_tokens=max_new_tokens, progress=None))
    seconds = time.time() - t
    tokens = sum(len(tok(s["answer"], add_special_tokens=False)["input_ids"]) + 1 for e in eps for s in e["trajectory"])
    return seconds, tokens, eps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=models.EMBEDDED, help="model or checkpoint")
    p.add_argument("--env", default="twx-cooking", help="environment")
    p.add_argument("--split", default="test", help="split")
    p.add_argument("--episodes", type=int, default=16, help="episodes per measurement")
    p.add_argument("--batch", type=int, default=16, help="batched way: episodes in lockstep")
    p.add_argument("--max-steps", type=int, default=10, help="step limit")
    p.add_argument("--max-new-tokens", type=int, default=24, help="answer cap")
    p.add_argument("--repeats", type=int, default=2, help="alternations of the two ways")
    p.add_argument("--dtype", default="auto", help="auto (bf16), bf16, fp32")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = p.parse_args()
    common.set_threads(args.threads)
    model, tok = models.load_model(args.model, dtype=args.dtype)
    model.eval()
    env = envs.make(args.env)
    tasks = env.tasks(args.split)[: args.episodes]
    env.close()
    res = {"batched": [], "one at a time": []}
    for r in range(args.repeats):
        for name, b in (("batched", args.batch), ("one at a time", 1)):
            s, tokens, eps = play(model, tok, args.env, tasks, b, args.max_steps, args.max_new_tokens)
            res[name].append((s, tokens, sum(e["success"] for e in eps)))
            print(f"repeat {r} {name}: {s:.1f} s, {tokens} tokens, {len(eps) / s:.3f} episodes/s", flush=True)

    table = Table(title=f"{args.model} {args.dtype} threads={args.threads or 'all'} episodes={args.episodes}")
    for c in ("way", "median s", "episodes/s", "tokens/s", "successes"):
        table.add_column(c)
    med = {}
    for name, runs in res.items():
        s = statistics.median(x[0] for x in runs)
        tk = statistics.median(x[1] for x in runs)
        med[name] = s
        table.add_row(name, f"{s:.1f}", f"{args.episodes / s:.3f}", f"{tk / s:.1f}", str(runs[0][2]))
    Console().print(table)
    print(f"ratio batched / one at a time (episodes/s): {med['one at a time'] / med['batched']:.2f}x")


if __name__ == "__main__":
    main()

"""Memory allocator for training on a CPU: glibc's malloc vs jemalloc, the same train.py run side by side.

A train.py process on a CPU allocates and frees activations of a new shape at every step
(length-grouped batches have a different length each). glibc's malloc keeps what it frees in its
heap, fragmented, so the resident memory grows over a run; jemalloc returns freed pages. This
script runs the same train.py command (fresh process each, --steps optimizer steps) under each
allocator, alternating --repeats times, and reports each one's peak resident memory, tokens/s
and final loss (the same loss means the same arithmetic). `JEMALLOC=1 bash run.sh` preloads it
(`apt install libjemalloc2`); the default is glibc's malloc, which is faster.

  python bench/allocator.py --data results/study/expert.jsonl --steps 20 --threads 1
  python bench/allocator.py --data results/study/expert.jsonl --steps 20 --threads 1 --side-by-side
  python bench/allocator.py --data runs/default/expert.jsonl --steps 40 --repeats 2 --out results/bench/allocator.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console
from rich.table import Table

import common  # noqa: E402
import models  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="chat JSONL (expert.jsonl from collect.py)")
    p.add_argument("--model", default=models.EMBEDDED, help="base model")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per trial")
    p.add_argument("--batch", type=int, default=8, help="examples per step")
    p.add_argument("--micro-batch", type=int, default=4, help="examples per forward pass (train.py --micro-batch)")
    p.add_argument("--repeats", type=int, default=1, help="alternations of the two allocators")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--jemalloc", default="", help="path of libjemalloc.so.2 (default: found with ldconfig)")
    p.add_argument("--side-by-side", action="store_true",
                   help="run the two allocators at the same time (use --threads 1 on a 2-core machine), so both see the same load")
    p.add_argument("--out", default=None, help="also append the trials to this JSONL file")
    return p.parse_args(argv)


def find_jemalloc() -> str | None:
    """The path of libjemalloc.so.2 as the dynamic linker knows it, or None."""
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return None
    for line in listing.splitlines():
        if "libjemalloc.so.2" in line and "=>" in line:
            return line.split("=>")[-1].strip()
    return None


def start(args, preload: str | None, tmp: str) -> subprocess.Popen:
    """Start one train.py process (a fresh process: its peak memory is its own)."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--model", args.model, "--data", args.data,
           "--steps", str(args.steps), "--batch", str(args.batch), "--micro-batch", str(args.micro_batch),
           "--threads", str(args.threads), "--seed", "0", "--out", str(Path(tmp) / "ckpt")]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    Path(tmp).mkdir(parents=True, exist_ok=True)
    with open(Path(tmp) / "stderr.txt", "w") as err:  # a file, not a pipe: two processes never wait on us
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    proc.t0 = time.time()
    return proc


def finish(proc: subprocess.Popen, tmp: str) -> dict:
    """Wait for it; its peak resident memory from wait4, its speed and loss from loss.jsonl."""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"train.py failed:\n{(Path(tmp) / 'stderr.txt').read_text()[-3000:]}")
    log = common.read_jsonl(Path(tmp) / "ckpt" / "loss.jsonl")
    return {"peak_rss_gb": round(usage.ru_maxrss / 2**20, 2), "tokens_per_s": log[-1]["tokens_per_s"],
            "final_loss": log[-1]["loss"], "seconds": round(time.time() - proc.t0, 1)}


def main(argv=None):
    args = parse_args(argv)
    lib = args.jemalloc or find_jemalloc()
    if not lib or not Path(lib).exists():
        sys.exit("error: libjemalloc.so.2 not found (apt install libjemalloc2, or --jemalloc PATH)")
    print(json.dumps({**vars(args), "jemalloc": lib}, indent=2))

    ways = [("glibc malloc", None), ("jemalloc", lib)]
    results = {name: [] for name, _ in ways}
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            if args.side_by_side:  # both at once: each sees the same load from the other and from the machine
                procs = [(name, start(args, preload, f"{tmp}/{i}")) for i, (name, preload) in enumerate(ways)]
                done = [(name, finish(proc, f"{tmp}/{i}")) for i, (name, proc) in enumerate(procs)]
            else:  # one after the other
                done = [(name, finish(start(args, preload, f"{tmp}/{i}"), f"{tmp}/{i}"))
                        for i, (name, preload) in enumerate(ways)]
        for name, res in done:
            results[name].append(res)
            print(f"repeat {r} {name}: {res}", flush=True)
            if args.out:
                common.append_jsonl(args.out, {"allocator": name, "repeat": r, "steps": args.steps,
                                                "batch": args.batch, "micro_batch": args.micro_batch,
                                                "threads": args.threads, "side_by_side": args.side_by_side, **res})
    table = Table(title=f"train.py, {args.model}, {args.steps} steps x batch {args.batch} "
                        f"(micro {args.micro_batch}), threads={args.threads or 'all'}")
    for c in ("allocator", "median peak RSS (GB)", "median tokens/s", "final loss (first trial)"):
        table.add_column(c)
    med = {}
    for name, runs in results.items():
        med[name] = (statistics.median(x["peak_rss_gb"] for x in runs), statistics.median(x["tokens_per_s"] for x in runs))
        table.add_row(name, f"{med[name][0]:.2f}", f"{med[name][1]:.1f}", f"{runs[0]['final_loss']:.5f}")
    Console().print(table)
    g, j = med["glibc malloc"], med["jemalloc"]
    print(f"ratio jemalloc / glibc: peak memory {j[0] / g[0]:.2f}x, tokens/s {j[1] / g[1]:.2f}x")


if __name__ == "__main__":
    main()

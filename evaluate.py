"""Evaluate a policy: success rate over episodes of a split (paper section 5, "success rate").

Plays N episodes of each split with a model, in waves of B episodes in lockstep (one batched generate
call per step across the live episodes of a wave; the splits' tasks are one queue, so a wave can hold
both), at most --max-steps steps each, greedy by default (--temperature 0.4 is what the paper used).
The untuned model gives the paper's "Prompt" baseline. A wave's episodes are written when it ends: a
killed run plays its unfinished waves again, whole, and its files equal an uninterrupted run's (a
wave's batch is fixed; decoding can depend on which episodes share one).

Two ways to turn an answer into an action:
  raw     the text after the last "Action:" (what the paper measures);
  mapped  the valid action closest to that text: separates "knows what to do" from "writes it in
          the right format", which makes a small untuned model's baseline informative (the env's
          map_action: for bfcl, the call with its tool name replaced by the closest available one).

Inputs:  --model (smollm2-135m, tiny-random, a Hugging Face id/folder, or a train.py checkpoint)
Outputs: OUT/{split}.jsonl (or {split}-mapped.jsonl): one line per episode (task, success, score,
         steps, invalid actions, the trajectory); OUT/summary.jsonl: one line per (model, split, mode)
         with n, success rate and a 95% interval (and, for a split made of several kinds of task such
         as bfcl's ood, a "groups" entry with each kind's numbers); OUT/args.json. Rerunning resumes.
         Episode lines are rewritten in task order at the end, so `--shard I/N --out DIR_I` runs on
         N processes or machines concatenate (cat DIR_*/test.jsonl) into the one-process file.

The tables over a run's finished evaluations (results, failures, ablations) are report.py's.

Examples:
  python evaluate.py --model smollm2-135m --env twx-cooking --split test ood --episodes 50 --out runs/demo/eval/prompt
  python evaluate.py --model runs/demo/ckpt/il --split test --episodes 50 --temperature 0.4 --out runs/demo/eval/il
"""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

import agent
import checkpoint
import common
import envs
import models
import stats


# ---------------------------------------------------------------------------------------------
# The script
def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=models.EMBEDDED, help="model name, Hugging Face id/folder or checkpoint")
    p.add_argument("--env", default="twx-cooking", help=f"environment: {', '.join(envs.ENV_NAMES)}")
    p.add_argument("--split", nargs="+", default=["test", "ood"], help="splits to evaluate (test, ood, train)")
    p.add_argument("--episodes", type=common.at_least(1), default=50, help="episodes per split (the first N tasks of the split)")
    p.add_argument("--batch", type=common.at_least(1), default=25, help="episodes played in lockstep")
    p.add_argument("--max-steps", type=common.at_least(0), default=0, help="step limit per episode (0 = the env's default)")
    p.add_argument("--temperature", type=common.at_least(0, float, high=100), default=0.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-k", type=common.at_least(0), default=0, help="sample only from the K likeliest tokens (0 = off: the full distribution)")
    p.add_argument("--top-p", type=common.at_least(0, float, strict=True, high=1), default=1.0, help="sample only from the smallest set of tokens holding this much probability (1 = off)")
    p.add_argument("--max-new-tokens", type=common.at_least(1), default=24, help="answer length cap (raise it for Thought: answers)")
    p.add_argument("--action-mode", choices=["raw", "mapped"], default="raw", help="raw answer or closest valid action")
    p.add_argument("--shard", default="0/1", help="I/N: play the I-th of N contiguous parts of the episodes")
    p.add_argument("--label", default=None, help="name of this model in the summary (default: --model)")
    p.add_argument("--seed", type=common.at_least(0), default=0, help="random seed (sampling)")
    p.add_argument("--threads", type=common.at_least(0), default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where it is faster than fp32 here: native bf16 CPU flags or CUDA, models.fast_bf16), bf16, fp32")
    p.add_argument("--out", required=True, help="output folder")
    args = p.parse_args(argv)
    return args


SETTING = ("model", "env", "max_steps", "temperature", "top_k", "top_p", "max_new_tokens", "seed")


def check_same_setting(args, out: Path) -> None:
    """Resuming is only safe into a folder written with the same model and decoding settings."""
    old = out / "args.json"
    if old.exists() and any(p.stat().st_size for p in out.glob("*.jsonl") if p.name != "summary.jsonl"):

        try:
            prev = json.loads(old.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise common.UserError(f"{old}: torn or damaged arguments file of an earlier run: delete it to resume "
                                   "(its episodes are kept) or use another --out") from None
        now = {k: getattr(args, k) for k in SETTING}
        now["dtype_resolved"] = models.resolved_dtype_name(args.dtype)  # bf16 and fp32 episodes differ
        diff = [k for k in now if k in prev and prev[k] != now[k]]
        if diff:
            raise common.UserError(f"{out} holds episodes of another setting ({', '.join(diff)} differ): "
                                   "use another --out or delete it")


def summarize(label: str, split: str, mode: str, episodes: list[dict]) -> dict:
    n = len(episodes)
    k = sum(e["success"] for e in episodes)
    lo, hi = stats.wilson(k, n)
    steps = sum(e["steps"] for e in episodes)
    return {"model": label, "split": split, "mode": mode, "n": n, "successes": k,
            "success": k / n if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)],
            "score": sum(e["score"] for e in episodes) / n if n else 0.0,
            "steps": steps / n if n else 0.0,
            "invalid_rate": sum(e["invalid"] for e in episodes) / steps if steps else 0.0}


def print_summary(rows: list[dict], episodes: dict) -> None:
    table = Table(title="evaluation")
    for c in ("model", "split", "mode", "n", "success", "95% CI", "score", "steps", "invalid"):
        table.add_column(c)
    for r in [x for row in rows for x in [row, *row.get("groups", {}).values()]]:
        table.add_row(r["model"], r["split"], r["mode"], str(r["n"]), f"{100 * r['success']:.1f}%",
                      f"{100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}", f"{r['score']:.2f}",
                      f"{r['steps']:.1f}", f"{100 * r['invalid_rate']:.0f}%")
    console = Console()
    console.print(table)
    for split, eps in episodes.items():
        for e in [e for e in eps if not e["success"]][:2]:
            acts = " > ".join(s["action"][:40] for s in e["trajectory"][:8])
            console.print(f"[dim]failure {e['task_id']}: {acts}{' > ...' if e['steps'] > 8 else ''}[/dim]")


def main(argv=None):
    args = parse_args(argv)
    checkpoint.check_checkpoint(args.model)  # a damaged checkpoint: one line, before any work
    out = Path(args.out)
    for split in args.split:
        envs.check_split(split)
    env = envs.make(args.env)
    common.lock_output(out, "evaluate")
    label = args.label or args.model
    check_same_setting(args, out)
    common.set_threads(args.threads)
    common.set_seed(args.seed)
    model = tok = None
    # Every split's tasks, in order, cut into waves of --batch episodes played in lockstep. A wave is the
    # unit of work: its episodes are written together when it ends, and an interrupted run plays its
    # unfinished waves again, whole. Decoding can depend on which episodes share a batch (bf16
    # rounding, padding), so fixed waves are what makes a resumed evaluation equal an uninterrupted one.
    paths, wanted, queue, done = {}, {}, [], set()
    for split in args.split:
        pool = env.tasks(split)
        if args.episodes > len(pool):  # never silently fewer games than asked for
            raise common.UserError(f"--episodes {args.episodes}: the {split} split of {args.env} holds {len(pool)} games")
        tasks = pool[: args.episodes]
        tasks = [tasks[i] for i in common.shard_range(len(tasks), args.shard)]
        paths[split] = out / (f"{split}.jsonl" if args.action_mode == "raw" else f"{split}-mapped.jsonl")
        wanted[split] = {t["task_id"] for t in tasks}
        done |= common.resume_jsonl(paths[split], key="task_id")
        queue += tasks
    waves = [queue[i: i + args.batch] for i in range(0, len(queue), args.batch)]
    todo = [w for w in waves if any(t["task_id"] not in done for t in w)]
    if todo:
        model, tok = models.load_model(args.model, dtype=args.dtype, device=models.shard_device(args.shard))
        model.eval()
    models.note_dtype(args)
    common.save_args(args, out)  # after the inputs loaded: a failed start leaves no args file behind
    if todo:
        pool = [envs.make(args.env) for _ in range(max(len(w) for w in todo))]  # reused by every wave
        for i, wave in enumerate(todo):
            eps = list(agent.run_episodes(model, tok, args.env, wave, batch=len(wave), pool=pool,
                                           max_steps=args.max_steps or None, temperature=args.temperature,
                                           top_k=args.top_k, top_p=args.top_p,
                                           max_new_tokens=args.max_new_tokens, action_mode=args.action_mode,
                                           progress=f"{'+'.join(args.split)} episodes, wave {i + 1}/{len(todo)}"))
            for split in args.split:
                common.append_jsonl_rows(paths[split], [e for e in eps if e["task_id"] in wanted[split]
                                                        and e["task_id"] not in done])
        for e in pool:
            e.close()
    rows, shown = [], {}
    for split in args.split:
        path = paths[split]
        if path.exists():  # the episode file in task order, whatever order the episodes finished in
            order = {t["task_id"]: i for i, t in enumerate(env.tasks(split))}
            common.write_jsonl(path, sorted(common.read_jsonl(path, require=common.EPISODE), key=lambda e: order.get(e["task_id"], len(order))))
        eps = [e for e in common.read_jsonl(path, require=common.EPISODE) if e["task_id"] in wanted[split]] if path.exists() else []
        shown[split] = eps
        row = summarize(label, split, args.action_mode, eps)
        group = {t["task_id"]: t["group"] for t in env.tasks(split) if "group" in t}
        if len(set(group.values())) > 1:  # a split of several kinds of task (bfcl's ood): each kind too
            row["groups"] = {g: summarize(label, f"{split}/{g}", args.action_mode,
                                          [e for e in eps if group.get(e["task_id"]) == g])
                             for g in dict.fromkeys(group.values())}
        rows.append(row)
    env.close()
    # summary.jsonl: one line per (model, split, mode); a rerun replaces its own lines
    spath = out / "summary.jsonl"
    old = common.read_jsonl(spath, require=common.SUMMARY) if spath.exists() else []
    keys = {(r["model"], r["split"], r["mode"]) for r in rows}
    common.write_jsonl(spath, [r for r in old if (r["model"], r["split"], r["mode"]) not in keys] + rows)
    if Path(args.model).is_dir():  # a checkpoint of ours: its model card gains these numbers

        checkpoint.add_evaluation(Path(args.model), rows)
    print_summary(rows, shown)
    return rows


if __name__ == "__main__":
    common.run_main(main)

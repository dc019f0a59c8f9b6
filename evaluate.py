"""Evaluate a policy: success rate over episodes of a split (paper section 5, "success rate").

Plays N episodes of each split with a model, B episodes in lockstep (one batched generate call per
step across all live episodes), at most --max-steps steps each, greedy by default (--temperature 0.4
is what the paper used). The untuned model gives the paper's "Prompt" baseline.

Two ways to turn an answer into an action:
  raw     the text after the last "Action:" (what the paper measures);
  mapped  the valid action closest to that text: separates "knows what to do" from "writes it in
          the right format", which makes a small untuned model's baseline informative.

Inputs:  --model (smollm2-135m, tiny-random, a Hugging Face id/folder, or a train.py checkpoint)
Outputs: OUT/{split}.jsonl (or {split}-mapped.jsonl): one line per episode (task, success, score,
         steps, invalid actions, the trajectory); OUT/summary.jsonl: one line per (model, split, mode)
         with n, success rate and a 95% interval; OUT/args.json. Rerunning resumes.

Examples:
  python evaluate.py --model smollm2-135m --env twx-cooking --split test ood --episodes 50 --out runs/demo/eval/prompt
  python evaluate.py --model runs/demo/ckpt/il --split test --episodes 50 --temperature 0.4 --out runs/demo/eval/il
"""
from __future__ import annotations

import argparse
from pathlib import Path

import common
import envs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=common.EMBEDDED, help="model name, Hugging Face id/folder or checkpoint")
    p.add_argument("--env", default="twx-cooking", help=f"environment: {', '.join(envs.ENV_NAMES)}")
    p.add_argument("--split", nargs="+", default=["test", "ood"], help="splits to evaluate (test, ood, train)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per split (the first N tasks of the split)")
    p.add_argument("--batch", type=int, default=25, help="episodes played in lockstep")
    p.add_argument("--max-steps", type=int, default=0, help="step limit per episode (0 = the env's default)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer length cap (raise it for Thought: answers)")
    p.add_argument("--action-mode", choices=["raw", "mapped"], default="raw", help="raw answer or closest valid action")
    p.add_argument("--label", default=None, help="name of this model in the summary (default: --model)")
    p.add_argument("--seed", type=int, default=0, help="random seed (sampling)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="auto (bf16), bf16, fp32")
    p.add_argument("--out", required=True, help="output folder")
    return p.parse_args(argv)


SETTING = ("model", "env", "max_steps", "temperature", "max_new_tokens", "seed")


def check_same_setting(args, out: Path) -> None:
    """Resuming is only safe into a folder written with the same model and decoding settings."""
    old = out / "args.json"
    if old.exists():
        import json

        prev = json.loads(old.read_text())
        diff = [k for k in SETTING if k in prev and prev[k] != getattr(args, k)]
        if diff:
            raise common.UserError(f"{out} holds episodes of another setting ({', '.join(diff)} differ): "
                                   "use another --out or delete it")


def summarize(label: str, split: str, mode: str, episodes: list[dict]) -> dict:
    n = len(episodes)
    k = sum(e["success"] for e in episodes)
    lo, hi = common.wilson(k, n)
    steps = sum(e["steps"] for e in episodes)
    return {"model": label, "split": split, "mode": mode, "n": n, "successes": k,
            "success": k / n if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)],
            "score": sum(e["score"] for e in episodes) / n if n else 0.0,
            "steps": steps / n if n else 0.0,
            "invalid_rate": sum(e["invalid"] for e in episodes) / steps if steps else 0.0}


def print_summary(rows: list[dict], episodes: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="evaluation")
    for c in ("model", "split", "mode", "n", "success", "95% CI", "score", "steps", "invalid"):
        table.add_column(c)
    for r in rows:
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = envs.make(args.env)
    for split in args.split:
        envs.check_split(split)
    label = args.label or args.model
    check_same_setting(args, out)
    common.save_args(args, out)
    common.set_threads(args.threads)
    common.set_seed(args.seed)
    model = tok = None
    rows, shown = [], {}
    for split in args.split:
        tasks = env.tasks(split)[: args.episodes]
        path = out / (f"{split}.jsonl" if args.action_mode == "raw" else f"{split}-mapped.jsonl")
        done = common.resume_jsonl(path, key="task_id")
        todo = [t for t in tasks if t["task_id"] not in done]
        if todo:
            if model is None:
                model, tok = common.load_model(args.model, dtype=args.dtype)
                model.eval()
            for ep in common.run_episodes(model, tok, args.env, todo, batch=args.batch,
                                          max_steps=args.max_steps or None, temperature=args.temperature,
                                          max_new_tokens=args.max_new_tokens, action_mode=args.action_mode,
                                          progress=f"{split} episodes"):
                common.append_jsonl(path, ep)
        wanted = {t["task_id"] for t in tasks}
        eps = [e for e in common.read_jsonl(path) if e["task_id"] in wanted]
        shown[split] = eps
        rows.append(summarize(label, split, args.action_mode, eps))
    env.close()
    # summary.jsonl: one line per (model, split, mode); a rerun replaces its own lines
    spath = out / "summary.jsonl"
    old = common.read_jsonl(spath) if spath.exists() else []
    keys = {(r["model"], r["split"], r["mode"]) for r in rows}
    common.write_jsonl(spath, [r for r in old if (r["model"], r["split"], r["mode"]) not in keys] + rows)
    print_summary(rows, shown)
    return rows


if __name__ == "__main__":
    common.run_main(main)

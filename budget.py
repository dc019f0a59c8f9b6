"""The imitation budget, chosen on dev: the paper's protocol before any comparison (section 5.1).

The paper does not compare methods at an arbitrary number of steps: it trains imitation, picks the
step count by training loss and validation success, and then gives IWM and SR that same budget. This
script makes the pick. One imitation run saves its checkpoint every N steps (train.py --save-every N);
each checkpoint plays the `dev` split (tasks of the training distribution that no training task
uses); the rule below reads the curve:

  budget = the earliest checkpoint whose dev success is within one standard error of the best one's
           (SE = sqrt(p (1 - p) / n) at the best rate p over n dev episodes)

that is, where dev success stops rising beyond its own noise. A curve still rising at its last
checkpoint picks that checkpoint and says so (`still_rising`: sweep longer); a flat curve picks its
first. test and ood are never read here.

The budget read must be the budget the arms get. A checkpoint of a cosine run is not a run of its
length: at step 308 of a 462-step cosine run the learning rate has not decayed, and the steps taken
so far add up to more learning rate than a fresh 308-step run gives (217 against 154.5 peak-rate
steps). Sweep with `train.py --schedule constant` (run.sh STUDY2=1): each checkpoint then *is* a run
of its length (tests/test_train.py), so the arms trained for the chosen budget are the policy the
rule read, and the sweep's checkpoint at the budget serves as IL's seed-0 arm. budget.json records
the sweep's schedule; a cosine sweep's budget is marked as not transferring (in the first study a
fresh 308-step run happened to read like the sweep's point on dev, 34 and 36 of 50 games:
docs/study.md, "Diagnosis").

Inputs:  --ckpt DIR: a train.py run with --save-every (DIR-steps/step-NNNNN/ and the final DIR)
Outputs: --out (default DIR/../budget.json): {"steps", "epochs", "steps_per_epoch", "rule", "still_rising",
         "curve": [{"step", "dev_success", "successes", "n", "dev_score", "train_loss"}]}, budget.png,
         and each checkpoint's dev episodes under --eval-dir (default DIR-dev/step-NNNNN/: resumable).
run.sh reads `steps` (IL, IWM's stage 2 and the matched readings) and `epochs` (SR's mixed data).

Without a sweep (--fixed-epochs E --data expert.jsonl), the same file states a given budget: run.sh's
default, so that every arm always reads its steps from budget.json.

Examples:
  python train.py --data runs/demo/expert.jsonl --epochs 6 --save-every 25 --out runs/demo/ckpt/sweep
  python budget.py --ckpt runs/demo/ckpt/sweep --env twx-cooking --episodes 50
  python budget.py --fixed-epochs 2 --data runs/demo/expert.jsonl --batch-size 8 --out runs/demo/budget.json
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

import common
import envs
import evaluate
import models


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default=None, help="train.py output folder trained with --save-every")
    p.add_argument("--fixed-epochs", type=common.at_least(0, float, high=1e4), default=0,
                   help="no sweep: the budget is this many epochs over --data at --batch (run.sh's default setting)")
    p.add_argument("--data", default=None, help="with --fixed-epochs: the imitation data (expert.jsonl)")
    p.add_argument("--batch-size", type=common.at_least(1), default=8, help="with --fixed-epochs: examples per optimizer step")
    p.add_argument("--env", default="twx-cooking", help=f"environment: {', '.join(envs.ENV_NAMES)}")
    p.add_argument("--episodes", type=common.at_least(1), default=50, help="dev episodes per checkpoint")
    p.add_argument("--batch", type=common.at_least(1), default=50, help="episodes played in lockstep")
    p.add_argument("--max-steps", type=common.at_least(0), default=0, help="step limit per episode (0 = the env's default)")
    p.add_argument("--temperature", type=common.at_least(0, float, high=100), default=0.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--max-new-tokens", type=common.at_least(1), default=24, help="answer length cap")
    p.add_argument("--threads", type=common.at_least(0), default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where it is faster than fp32 here), bf16, fp32")
    p.add_argument("--eval-dir", default=None, help="where the dev episodes go (default CKPT-dev)")
    p.add_argument("--out", default=None, help="the budget file (default: CKPT/../budget.json)")
    p.add_argument("--read", default=None, metavar="FILE",
                   help="only check a budget file and print its steps and epochs (what run.sh reads back)")
    args = p.parse_args(argv)
    if args.read:
        return args
    if not args.ckpt and not (args.fixed_epochs > 0 and args.data):
        p.error("--ckpt (a sweep to read) or --fixed-epochs E with --data is required")
    return args


RULE = "earliest checkpoint whose dev success >= best - sqrt(best (1 - best) / n)"


def choose_budget(curve: list[dict]) -> tuple[dict, bool]:
    """The rule (module docstring) on points {"step", "successes", "n"}: (the chosen point, still_rising).
    still_rising: the rule chose the last point (no earlier point is within one SE of the best), so a
    longer run might have gone higher. A plateau that reaches the last point is not rising."""
    if not curve:
        raise common.UserError("no checkpoints to choose a budget from")
    curve = sorted(curve, key=lambda c: c["step"])
    rate = [c["successes"] / c["n"] for c in curve]
    best = max(rate)
    se = math.sqrt(best * (1 - best) / curve[rate.index(best)]["n"])
    chosen = next(c for c, r in zip(curve, rate) if r >= best - se - 1e-12)
    return chosen, chosen is curve[-1] and len(curve) > 1 and rate[-1] > rate[0]


def checkpoints(ckpt: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every saved point of the run, the final checkpoint last."""
    log = ckpt / "loss.jsonl"
    if not log.exists():
        raise common.UserError(f"{ckpt}: not a finished train.py checkpoint (no loss.jsonl)")
    total = sum(1 for _ in log.open())
    found = sorted((int(d.name.split("-")[1]), d) for d in (ckpt.parent / f"{ckpt.name}-steps").glob("step-*")
                   if (d / "loss.jsonl").exists())
    if not found:
        raise common.UserError(f"{ckpt.parent / (ckpt.name + '-steps')}: no step-* checkpoints (train with --save-every N)")
    return found + [(total, ckpt)]


def steps_per_epoch(ckpt: Path) -> int:
    args = json.loads((ckpt / "args.json").read_text())
    n = sum(len(common.read_jsonl(p)) for p in args["data"])
    return math.ceil(n / args["batch"])


def plot(curve: list[dict], chosen: dict, path: Path) -> None:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    steps = [c["step"] for c in curve]
    ax.plot(steps, [100 * c["dev_success"] for c in curve], "o-", label="dev success %")
    ax.plot(steps, [100 * c["dev_score"] for c in curve], "s--", alpha=0.6, label="dev score x100")
    ax.axvline(chosen["step"], color="grey", ls=":", label=f"budget: {chosen['step']} steps")
    ax.set_xlabel("imitation steps")
    ax2 = ax.twinx()
    ax2.plot(steps, [c["train_loss"] for c in curve], "^-", color="tab:red", alpha=0.5, label="train loss")
    ax2.set_ylabel("train loss")
    fig.legend(loc="upper center", ncol=4, fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=120)


def read_budget(path) -> tuple[int, float]:
    """(steps, epochs) of a budget file, checked: a torn file, a missing field or a budget of no step
    is one line naming the file, never a default trained instead."""
    path = Path(path)
    try:
        budget = json.loads(path.read_text(encoding="utf-8"))
        steps, epochs = budget["steps"], budget["epochs"]
    except FileNotFoundError:
        raise common.UserError(f"{path}: no such file") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise common.UserError(f"{path}: not a budget file ({type(e).__name__}: {e}); delete it to choose the budget again") from None
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise common.UserError(f"{path}: steps must be a whole number >= 1, got {steps!r}")
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or not math.isfinite(epochs) or epochs <= 0:
        raise common.UserError(f"{path}: epochs must be a number > 0, got {epochs!r}")
    return steps, epochs


def main(argv=None):
    args = parse_args(argv)
    if args.read:  # run.sh reads the budget back through this check
        steps, epochs = read_budget(args.read)
        print(steps, epochs)
        return {"steps": steps, "epochs": epochs}
    if not args.ckpt:  # the budget given, not chosen: same file, so every arm reads it the same way
        per_epoch = math.ceil(len(common.read_jsonl(args.data)) / args.batch_size)
        steps = max(1, round(args.fixed_epochs * per_epoch))  # train.py's own count for --epochs
        budget = {"steps": steps, "epochs": args.fixed_epochs, "steps_per_epoch": per_epoch,
                  "rule": f"fixed: {args.fixed_epochs:g} epochs (not chosen on dev)", "still_rising": None, "curve": []}
        out = Path(args.out) if args.out else Path(args.data).parent / "budget.json"
        common.write_atomic(out, json.dumps(budget, indent=2) + "\n")
        print(f"wrote {out}: {steps} steps ({args.fixed_epochs:g} epochs of {per_epoch})")
        return budget
    ckpt = Path(args.ckpt)
    points = checkpoints(ckpt)
    env = envs.make(args.env)  # fails fast on a bad env name, before any evaluation
    env.close()
    out = Path(args.out) if args.out else ckpt.parent / "budget.json"
    eval_dir = Path(args.eval_dir) if args.eval_dir else ckpt.parent / f"{ckpt.name}-dev"
    common.lock_output(out.parent, "budget")
    models.note_dtype(args)
    common.save_args(args, out.parent, f"{out.stem}_args.json")
    log = [json.loads(x) for x in (ckpt / "loss.jsonl").open()]
    curve = []
    for step, folder in points:
        ev = eval_dir / f"step-{step:05d}"
        if not (ev / "summary.jsonl").exists():  # each checkpoint's dev reading resumes on its own
            evaluate.main(["--model", str(folder), "--env", args.env, "--split", "dev", "--episodes", str(args.episodes),
                           "--batch", str(args.batch), "--max-steps", str(args.max_steps),
                           "--temperature", str(args.temperature), "--max-new-tokens", str(args.max_new_tokens),
                           "--threads", str(args.threads), "--dtype", args.dtype, "--label", f"il@{step}", "--out", str(ev)])
        row = next(r for r in common.read_jsonl(ev / "summary.jsonl", require=common.SUMMARY) if r["split"] == "dev")
        window = log[max(0, step - max(1, step // 10)): step]  # the last tenth of the steps so far
        curve.append({"step": step, "dev_success": row["success"], "successes": row["successes"], "n": row["n"],
                      "dev_score": round(row["score"], 4), "invalid_rate": round(row["invalid_rate"], 4),
                      "train_loss": round(sum(r["loss"] for r in window) / len(window), 4)})
    chosen, rising = choose_budget(curve)
    per_epoch = steps_per_epoch(ckpt)
    schedule = json.loads((ckpt / "args.json").read_text()).get("schedule", "cosine")
    budget = {"steps": chosen["step"], "epochs": round(chosen["step"] / per_epoch, 4), "steps_per_epoch": per_epoch,
              "rule": RULE, "still_rising": rising, "dev_episodes": args.episodes, "schedule": schedule,
              "transfers": schedule == "constant", "curve": curve}
    common.write_atomic(out, json.dumps(budget, indent=2) + "\n")
    plot(curve, chosen, out.with_suffix(".png"))
    table = Table(title=f"imitation on dev ({args.env}): budget {chosen['step']} steps = {budget['epochs']} epochs"
                        + (" (still rising: sweep longer)" if rising else ""))
    for c in ("step", "epochs", "dev success", "score", "invalid", "train loss"):
        table.add_column(c)
    for c in curve:
        mark = " <" if c["step"] == chosen["step"] else ""
        table.add_row(f"{c['step']}{mark}", f"{c['step'] / per_epoch:.2f}", f"{c['successes']}/{c['n']}",
                      f"{c['dev_score']:.3f}", f"{100 * c['invalid_rate']:.0f}%", f"{c['train_loss']:.3f}")
    Console().print(table)
    print(f"wrote {out}")
    return budget


if __name__ == "__main__":
    common.run_main(main)

"""The results, from finished evaluations: methods x splits over seeds, and how games are lost (paper section 5).

evaluate.py plays episodes and writes them; this script only reads them. Three readings:

  --table RUN     RUN/results.md + results.jsonl: success per method and split, mean ± 95% interval
                  over training seeds (never narrower than the interval over all episodes pooled),
                  the gain over IL per shared seed and the paired per-episode sign test against IL
                  (--reference METHOD: against another method, e.g. il-long, written beside it)
  --failures RUN  RUN/failures.md: every unsolved episode by how it ended (the env's FailureReading; for
                  twx-cooking the move that lost the game, e.g. the wrong appliance, and every cook
                  move against the recipe's verb); RUN/dev/ readings get rows of their own.
                  With --seeds S [S ...]: those training seeds' evaluations only, to compare arms on
                  the seeds they share -> RUN/failures-s<S>-<S>....md (dev rows left out)
  --ablation DIR  DIR/ablation.md, .jsonl and .png: ablate.sh's settings, one results table each, gathered

And two readings study.sh asks of a run resumed over sittings:

  --left RUN         per seed, the arms whose evaluations are not all written yet, and the dtype the
                     seed's evaluations ran in (with --seeds, --arms, --splits, --mapped, --dtype)
  --check-dtype RUN  one training seed's arms share a dtype, since they are compared game by game:
                     refused (one line, exit 2) when --dtype is another here than the seed's so far

Inputs:  RUN/eval/<method>/s<seed>/{summary.jsonl, <split>.jsonl, <split>-mapped.jsonl, args.json}
         (evaluate.py's folders, as run.sh lays them out), RUN/dev/<name>/ (budget.py's)
Outputs: the files above, written whole (an interrupted run leaves the previous version), and rich tables

Examples:
  python report.py --table runs/default
  python report.py --table results/study --reference il-long
  python report.py --failures results/study
  python report.py --failures results/study --seeds 0 1 2
  python report.py --left results/study2 --seeds 0 1 2 --arms il il-long iwm iwm-targeted --splits test ood
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

import common
import envs
import models
import stats


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", default=None, metavar="RUN",
                   help="build RUN/results.md + results.jsonl from RUN/eval/<method>/s<seed>/")
    p.add_argument("--reference", default="il", metavar="METHOD",
                   help="with --table: the method gains and paired episodes are counted against (default il; "
                        "another writes results-vs-METHOD.md/.jsonl beside results.md)")
    p.add_argument("--failures", default=None, metavar="RUN",
                   help="RUN/failures.md: every unsolved episode of RUN/eval/ (and RUN/dev/) by how it failed")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                   help="with --failures: only these training seeds' evaluations (no dev rows), written to "
                        "RUN/failures-s<S>-<S>....md, so arms are compared on the seeds they share; "
                        "with --left and --check-dtype: the seeds to read")
    p.add_argument("--ablation", default=None, metavar="DIR",
                   help="DIR/ablation.md, .jsonl and .png from the run folders of ablate.sh")
    p.add_argument("--left", default=None, metavar="RUN", help="per seed, the arms still to evaluate (study.sh left)")
    p.add_argument("--check-dtype", default=None, metavar="RUN",
                   help="refuse (exit 2) when --dtype here differs from the dtype the seeds' evaluations ran in")
    p.add_argument("--arms", nargs="+", default=[], help="with --left: the arms of the run")
    p.add_argument("--splits", nargs="+", default=["test", "ood"], help="with --left: the splits every arm is read on")
    p.add_argument("--mapped", type=int, choices=[0, 1], default=0, help="with --left: 1 when every arm is also read mapped")
    p.add_argument("--dtype", default="auto", help="with --left and --check-dtype: run.sh's DTYPE")
    args = p.parse_args(argv)
    if sum(bool(x) for x in (args.table, args.failures, args.ablation, args.left, args.check_dtype)) != 1:
        p.error("give one of --table RUN, --failures RUN, --ablation DIR, --left RUN or --check-dtype RUN")
    if args.seeds is not None and not (args.failures or args.left or args.check_dtype):
        p.error("--seeds goes with --failures, --left or --check-dtype")
    if (args.left or args.check_dtype) and args.seeds is None:
        p.error("--left and --check-dtype need --seeds")
    if args.seeds is not None and min(args.seeds) < 0:
        p.error(f"argument --seeds: must be >= 0, got {min(args.seeds)}")
    return args


# ---------------------------------------------------------------------------------------------
# The results table (run.sh, last stage): methods x splits over training seeds
def _readings(summaries, name_seed):
    """(name, seed, split, episodes, folder) for each line of each summary.jsonl (a mapped reading's
    episodes are in <split>-mapped.jsonl); name_seed(folder) -> (name, seed)."""
    for summary in summaries:
        name, seed = name_seed(summary.parent)
        for row in common.read_jsonl(summary, require=common.SUMMARY):
            file = f"{row['split']}.jsonl" if row["mode"] == "raw" else f"{row['split']}-mapped.jsonl"
            yield name, seed, row["split"], common.read_jsonl(summary.parent / file, require=common.EPISODE), summary.parent


SHARED = "shared.json"  # {"run": "../k1", "methods": ["il", ...]}: evaluations a run reads from another


def lender(run: Path) -> tuple[Path, list[str]] | None:
    """(the other run, the methods it lends) from RUN/shared.json, or None. ablate.sh: the settings of
    an ablation share the arms that do not depend on it, evaluated once in the first setting (a file,
    not a link, so a zip of results/ keeps it)."""
    if not (run / SHARED).exists():
        return None
    spec = common.read_jsonl(run / SHARED, require={"run": str, "methods": [str]})[0]
    return run / spec["run"], spec["methods"]


def eval_folder(run: Path, method: str, seed) -> Path:
    """RUN/eval/<method>/s<seed>, or the lender's where RUN has none of its own."""
    own = run / "eval" / method / f"s{seed}"
    lent = None if own.exists() else lender(run)
    return lent[0] / "eval" / method / f"s{seed}" if lent and method in lent[1] else own


def evaluations(run: Path):
    """Every evaluation under RUN/eval/<method>/s<seed>/ (and those RUN/shared.json lends it):
    (method, seed, split, episodes, folder), one per line of its summary.jsonl."""
    own = sorted(run.glob("eval/*/s*/summary.jsonl"))
    lent, spec = [], lender(run)
    if spec:
        other, methods = spec
        mine = {p.parent.parent.name for p in own}
        lent = [p for m in methods if m not in mine for p in sorted(other.glob(f"eval/{m}/s*/summary.jsonl"))]
        if not lent:
            raise common.UserError(f"{run / SHARED}: {other}/eval holds none of {', '.join(methods)}")
    return _readings(own + lent, lambda d: (d.parent.name, int(d.name[1:])))


def dev_readings(run: Path):
    """The `dev` readings under RUN/dev/<name>/ (budget.py's checkpoints, step-00308, and any other
    checkpoint read on dev), in the shape of evaluations(): (name, 0, split, episodes, folder). Only
    --failures reads them; the results tables never do (dev chooses, it does not report)."""
    return _readings(sorted(run.glob("dev/*/summary.jsonl")), lambda d: (d.name, 0))


def load_runs(run: Path) -> tuple[dict, dict]:
    """From RUN/eval/<method>/s<seed>/<split>[-mapped].jsonl: {(method, split): {seed: {task_id: success}}}
    and {(method, split): [score of every episode, all seeds]}, the game's partial credit (twx: the
    share of the recipe's points earned), finer than success where success is near 0."""
    found, scores = {}, {}
    for method, seed, split, eps, _ in evaluations(run):
        found.setdefault((method, split), {})[seed] = {e["task_id"]: bool(e["success"]) for e in eps}
        scores.setdefault((method, split), []).extend(float(e["score"]) for e in eps if "score" in e)
    return found, scores


def paired(a: dict, b: dict) -> tuple[int, int]:
    """Episodes (same seed, same task) that method a solves and b does not, and the reverse."""
    wins = losses = 0
    for seed in a.keys() & b.keys():
        for task in a[seed].keys() & b[seed].keys():
            wins += a[seed][task] and not b[seed][task]
            losses += b[seed][task] and not a[seed][task]
    return wins, losses


METHOD_ORDER = ("prompt", "il", "il-long", "iwm", "iwm-targeted", "iwm-within", "iwm-mix", "sr", "rl-il", "rl-iwm", "rl-sr")


def game_comparison(a: dict, b: dict) -> dict:
    """Arm a against arm b ({seed: {game: solved}} each) with the game as the unit: the difference in
    success on the seeds and games both read, its 95% interval resampling games, the games a solves
    more often than b and the reverse, the exact sign-flip test on the per-game differences (p), the
    sign test over games (p_sign), and the smallest difference this design detects (mde: 80% power,
    two-sided 5%)."""
    diffs = stats.game_diffs(a, b)
    seeds = len(a.keys() & b.keys())
    per_game = [d / seeds for d in diffs]
    lo, hi = stats.bootstrap_mean(per_game)
    better, worse = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {"seeds": seeds, "games": len(diffs), "diff": round(sum(per_game) / len(per_game), 4) if per_game else 0.0,
            "ci95": [round(lo, 4), round(hi, 4)], "better": better, "worse": worse,
            "p": round(stats.sign_flip_test(diffs), 4), "p_sign": round(stats.sign_test(better, worse), 4),
            "mde": round(stats.min_detectable(per_game), 4)}


def method_rank(m: str) -> tuple:
    """Where a method's rows go in a table: METHOD_ORDER, each method followed by its "-mapped" twin
    (run.sh MAPPED=1), unknown methods last, by name."""
    base = m.removesuffix("-mapped")
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else 99, base, m != base)


def results_table(run: Path, reference: str = "il") -> list[dict]:
    found, scores = load_runs(run)
    if not found:
        raise common.UserError(f"{run}/eval: no evaluation summaries found")
    methods = sorted({m for m, _ in found}, key=method_rank)
    if reference != "il" and reference not in methods:  # asked for by name (a run without IL still gets its table)
        raise common.UserError(f"{run}/eval: no evaluations of the reference method {reference!r} (have: {', '.join(methods)})")
    splits = [s for s in ("test", "ood", "train") if any(sp == s for _, sp in found)]
    rows = []
    for split in splits:
        ref = found.get((reference, split), {})
        ref_rates = {s: sum(v.values()) / len(v) for s, v in ref.items() if v}
        for m in methods:
            per_seed = found.get((m, split))
            if not per_seed:
                continue
            rates = {s: sum(v.values()) / len(v) for s, v in per_seed.items() if v}
            mean, half = stats.mean_ci(list(rates.values()))
            # the interval over episodes, all seeds pooled: with one seed the only one there is, and
            # with a few seeds a floor: 2-3 seeds that happen to agree give a t-interval of 0
            solved, episodes = sum(sum(v.values()) for v in per_seed.values()), sum(len(v) for v in per_seed.values())
            lo, hi = stats.wilson(solved, episodes)
            half = max(half, (hi - lo) / 2)
            # the game as the unit: each game's solved fraction over the seeds, an interval resampling games
            per_game = stats.game_rates(per_seed)
            g_lo, g_hi = stats.game_interval(per_game)
            row = {"method": m, "split": split, "seeds": sorted(rates), "episodes": episodes,
                   "success": round(mean, 4), "ci95": round(half, 4), "per_seed": {str(k): round(v, 4) for k, v in rates.items()},
                   "games": len(per_game), "game_ci95": [round(g_lo, 4), round(g_hi, 4)],
                   "dtype": eval_dtype(run, m, sorted(rates))}
            if scores.get((m, split)):
                row["score"] = round(sum(scores[m, split]) / len(scores[m, split]), 4)
            if ref_rates and m != reference:
                # gain over imitation (or --reference): per seed where both exist, else against its mean
                common_seeds = rates.keys() & ref_rates.keys()
                if common_seeds:
                    row["gain_vs_il"] = round(sum(rates[s] - ref_rates[s] for s in common_seeds) / len(common_seeds), 4)
                    wins, losses = paired(per_seed, ref)
                    row["paired_vs_il"] = {"wins": wins, "losses": losses, "p": round(stats.sign_test(wins, losses), 4)}
                    row["games_vs_il"] = game_comparison(per_seed, ref)
                else:
                    row["gain_vs_il"] = round(mean - sum(ref_rates.values()) / len(ref_rates), 4)
                row["reference"] = reference  # the *_vs_il fields count against this method (--reference)
            rows.append(row)
    return rows


def eval_args(folder: Path) -> dict:
    """An evaluation folder's args.json ({} where there is none, as in hand-made folders)."""
    path = folder / "args.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise common.UserError(f"{path}: not JSON ({e})") from None


def recorded_dtype(run: Path, method: str, seed) -> str:
    """What --dtype became for one evaluation, from its args file; "auto*" (the flag, starred) where
    the file is older than dtype_resolved, "?*" where there is none."""
    prev = eval_args(eval_folder(run, method, seed))
    return prev.get("dtype_resolved") or f"{prev.get('dtype', '?')}*"


def seed_dtypes(run: Path, seed: int) -> dict:
    """{method: dtype} of every evaluation of this training seed that recorded what --dtype became."""
    found = {d.parent.name: recorded_dtype(run, d.parent.name, seed) for d in sorted(run.glob(f"eval/*/s{seed}"))}
    return {m: d for m, d in found.items() if not d.endswith("*")}


def left(run: Path, seeds: list[int], arms: list[str], splits: list[str], mapped: bool, dtype: str) -> list[str]:
    """study.sh left: per seed, the arms whose evaluations (every split, and mapped ones with --mapped)
    are not all written, and the dtypes the seed's written evaluations ran in; first, what --dtype
    is on this machine. A study resumed over sittings is continued in the dtype its seeds began in."""
    def done(folder: Path) -> bool:
        summary = folder / "summary.jsonl"
        return summary.exists() and set(splits) <= {r["split"] for r in common.read_jsonl(summary, require=common.SUMMARY)}
    lines = [f"left: this machine's dtype (DTYPE {dtype}): {models.resolved_dtype_name(dtype)}"]
    for seed in seeds:
        todo = [a for a in arms if not (done(run / "eval" / a / f"s{seed}") and
                                        (not mapped or done(run / "eval" / f"{a}-mapped" / f"s{seed}")))]
        ran = ", ".join(sorted(set(seed_dtypes(run, seed).values()))) or "nothing yet"
        lines.append(f"left: seed {seed}: {' '.join(todo) or 'nothing'} (its evaluations ran in: {ran})")
    print("\n".join(lines))
    return lines


def check_seed_dtype(run: str, seed: str, dtype: str = "auto") -> None:
    """study.sh, before it runs a seed: a seed's arms are compared game by game (the paired test),
    so they all run in one dtype. bf16 and fp32 train and decode differently, and --dtype auto means
    bf16 on a CPU with native bf16 and fp32 elsewhere: a run resumed on another machine would mix them."""
    here = models.resolved_dtype_name(dtype)
    other = {m: d for m, d in seed_dtypes(Path(run), int(seed)).items() if d != here}
    if other:
        method, was = next(iter(other.items()))
        raise common.UserError(
            f"{run}/eval/{method}/s{seed}: seed {seed}'s arms ran in {was}, and --dtype {dtype} is {here} on this machine; "
            f"one seed's arms share a dtype: resume it where {was} is what auto gives, set DTYPE={was} "
            f"(can be many times slower here: docs/benchmarks.md), or go on with another seed")


def pvalue(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else "< 0.01"


def write_table(run: Path, rows: list[dict], reference: str = "il") -> str:
    ref = "IL" if reference == "il" else reference
    cols = ("method", "split", "seeds", "games", "solved", "success % [95%]", f"vs {ref}, points [95%]",
            "games +/-", "p", "MDE")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table = Table(title=f"results: {run}")
    for c in cols:
        table.add_column(c)
    for r in rows:
        g = r.get("games_vs_il")
        lo, hi = r["game_ci95"]
        cells = [r["method"], r["split"], str(len(r["seeds"])), str(r["games"]),
                 f"{round(r['success'] * r['episodes'])}/{r['episodes']}", f"{100 * r['success']:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]",
                 f"{100 * g['diff']:+.1f} [{100 * g['ci95'][0]:+.0f}, {100 * g['ci95'][1]:+.0f}]" if g else "",
                 f"+{g['better']} / -{g['worse']}" if g else "", pvalue(g["p"]) if g else "",
                 f"{100 * g['mde']:.1f}" if g and g["mde"] == g["mde"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
        table.add_row(*cells)
    Console().print(table)
    lines.append(f"\nThe game is the unit: every seed plays the same games. success: solved episodes over all seeds, "
                 f"[95%] resampling games (a game's seeds stay together; at least the Wilson interval over the games). vs {ref}: the difference in success on the seeds "
                 f"both arms ran, [95%] resampling games; games +/-: games this arm solves on more of those seeds than "
                 f"{ref} / on fewer; p: exact sign-flip permutation test on the per-game differences; MDE: the smallest "
                 "difference (points) this design detects with 80% power at 5%, from the per-game spread.")
    # what the evaluations ran in (bf16 and fp32 decode differently): one dtype, or which arm used which
    dtypes = {r.get("dtype", "?*") for r in rows} - {"?*"}  # ?*: no args file says (hand-made folders)
    if dtypes:
        by_method = {r["method"]: r.get("dtype", "?") for r in rows}
        lines.append(f"\ndtype: {dtypes.pop()} (every evaluation)" if len(dtypes) == 1 else
                     "\ndtypes differ: " + "; ".join(f"{m} {d}" for m, d in by_method.items()))
        print(lines[-1].strip())
    md = "\n".join(lines) + "\n"
    name = "results" if reference == "il" else f"results-vs-{reference}"
    common.write_atomic(run / f"{name}.md", md)
    common.write_jsonl(run / f"{name}.jsonl", rows)
    if reference == "il":
        plot_results(rows, run / "results.png", str(run), loss_curves(run))
    return md


def loss_curves(run: Path) -> dict[str, list[float]]:
    """The training loss of every checkpoint of the first training seed under RUN/ckpt/ (each arm and
    each world-model stage; a sweep too), from its loss.jsonl: {name: [loss per step]}. Checkpoints are
    often gone from a resumed or committed folder: then what is left, maybe nothing."""
    logs = sorted(run.glob("ckpt/*/loss.jsonl"))
    seeds = sorted({int(p.parent.name.rsplit("-s", 1)[1]) for p in logs if p.parent.name.rsplit("-s", 1)[-1].isdigit()})
    curves = {}
    for p in logs:
        name = p.parent.name
        if name == "sweep" or (seeds and name.endswith(f"-s{seeds[0]}")):
            curves[name] = [float(r["loss"]) for r in common.read_jsonl(p, require=common.LOSS)]
    return {k: v for k, v in curves.items() if v}


def plot_results(rows: list[dict], path: Path, title: str, curves: dict | None = None) -> list[str]:
    """results.png: success by method, one bar per method and split, with its 95% interval (the
    game as the unit, as in the table); beside it, when there are any, the training loss curves
    (loss_curves). Returns the bars' labels, method/split, in drawing order."""
    splits = [s for s in ("test", "ood", "train") if any(r["split"] == s for r in rows)]
    methods = sorted({r["method"] for r in rows}, key=method_rank)
    by = {(r["method"], r["split"]): r for r in rows}
    width_bars = max(5, 1.1 * len(methods) + 2)
    fig = Figure(figsize=(width_bars + (5 if curves else 0), 3.6))
    ax, *right = fig.subplots(1, 2 if curves else 1, width_ratios=[width_bars, 5] if curves else None,
                              squeeze=False)[0]
    width = 0.8 / len(splits)
    drawn = []
    for j, split in enumerate(splits):
        xs, ys, lo, hi = [], [], [], []
        for i, m in enumerate(methods):
            r = by.get((m, split))
            if r is None:
                continue
            g_lo, g_hi = r.get("game_ci95", (r["success"], r["success"]))
            xs.append(i + (j - (len(splits) - 1) / 2) * width)
            ys.append(100 * r["success"])
            lo.append(100 * (r["success"] - g_lo))
            hi.append(100 * (g_hi - r["success"]))
            drawn.append(f"{m}/{split}")
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=split, alpha=0.85)
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("success % (95% interval, games)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if curves:
        for name, loss in sorted(curves.items()):  # a running mean over 5% of the steps: one batch is noisy
            w = max(1, len(loss) // 20)
            smooth = [sum(loss[max(0, i - w + 1):i + 1]) / len(loss[max(0, i - w + 1):i + 1]) for i in range(len(loss))]
            right[0].plot(range(1, len(loss) + 1), smooth, label=name, lw=1.2, alpha=0.9)
        right[0].set_xlabel("optimizer step")
        right[0].set_ylabel("training loss")
        low, high = min(min(v) for v in curves.values()), max(max(v) for v in curves.values())
        if low > 0 and high / low > 20:  # from a random start to a fitted model: orders of magnitude
            right[0].set_yscale("log")
        right[0].set_title("training loss (first seed; running mean over 5% of the steps)", fontsize=9)
        right[0].legend(fontsize=6, ncol=2)
        right[0].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return drawn


# ---------------------------------------------------------------------------------------------
# Why episodes fail (--failures): each unsolved episode's ending, counted per method and split
def _count_table(rows: list[dict], field: str, keys: list[str], title: str):
    """One count table, method x split rows and a column per key of row[field]: markdown lines and
    the rich table (its columns fold their headers instead of cutting them)."""
    cols = ("method", "split", "episodes", "solved", *keys)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table = Table(title=title)
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in rows:
        cells = [r["method"], r["split"], str(r["episodes"]), str(r["solved"]), *(str(r[field].get(k, 0)) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
        table.add_row(*cells)
    return lines, table


def failures_name(seeds=None) -> str:
    """failures.md, or failures-s0-1-2.md for the seeds 0, 1, 2."""
    return "failures.md" if seeds is None else "failures-s" + "-".join(map(str, sorted(set(seeds)))) + ".md"


def failures(run: Path, seeds=None) -> list[dict]:
    """For every evaluation under RUN/eval/ (and every dev reading under RUN/dev/), the unsolved
    episodes by kind of failure, pooled over seeds, as the env's FailureReading reads them (envs/base.py:
    the step limit or a loss; envs/twx.py for twx-cooking: the move that lost the game, which appliance
    each wrong-appliance loss used for which verb, and how often every cook move, solved games too,
    used the recipe's appliance) -> RUN/failures.md (and rich tables). SEEDS: only
    those training seeds' evaluations, no dev rows -> RUN/failures-s<S>-....md (failures_name)."""
    counts: dict = {}
    chosen = None if seeds is None else sorted(set(seeds))
    readings = itertools.chain(evaluations(run), dev_readings(run)) if chosen is None else \
        (x for x in evaluations(run) if x[1] in chosen)
    for method, seed, split, eps, folder in readings:
        args = eval_args(folder)
        env = args.get("env", "twx-cooking")
        max_steps = args.get("max_steps") or envs.default_max_steps(env)
        reading = envs.failure_reading(env)
        row = counts.setdefault((method, split), {"method": method, "split": split, "episodes": 0, "solved": 0,
                                                  "kinds": {}, "details": {}, "choices": []})
        row["episodes"] += len(eps)
        for e in eps:
            row["choices"] += reading.choices(e.get("trajectory", []))  # e.g. (the recipe's verb, the one used)
            if e["success"]:
                row["solved"] += 1
            else:
                kind = reading.why_failed(e.get("trajectory", []), max_steps)
                row["kinds"][kind] = row["kinds"].get(kind, 0) + 1
                detail = reading.detail(e.get("trajectory", [])) if kind != "step limit" else None
                if detail:  # e.g. "fry -> grill": what the recipe said, what the agent did
                    row["details"][detail] = row["details"].get(detail, 0) + 1
    if not counts:
        raise common.UserError(f"{run}/eval: no evaluation summaries found"
                               + ("" if chosen is None else f" for seeds {' '.join(map(str, chosen))}"))
    splits = ("test", "ood", "dev", "train")
    rows = sorted(counts.values(), key=lambda r: (splits.index(r["split"]) if r["split"] in splits else 9, method_rank(r["method"])))
    total: dict = {}
    for r in rows:
        for k, n in r["kinds"].items():
            total[k] = total.get(k, 0) + n
    kinds = sorted(total, key=lambda k: (-total[k], k))  # the most common failure first
    lines, table = _count_table(rows, "kinds", kinds, f"why episodes fail: {run}"
                                + ("" if chosen is None else f", seeds {' '.join(map(str, chosen))}"))
    details: dict = {}
    for r in rows:
        for k, n in r["details"].items():
            details[k] = details.get(k, 0) + n
    if details:  # e.g. twx-cooking: which appliance the recipe asked for, which one the agent used
        more, detail_table = _count_table(rows, "details", sorted(details, key=lambda k: (-details[k], k)),
                                          reading.detail_title)
        lines += ["", reading.detail_caption, "", *more]
    choice_table = None
    if any(r["choices"] for r in rows):  # e.g. twx-cooking: does the policy read the verb, or guess?
        for r in rows:
            r["choice_cells"] = reading.choice_cells(r["choices"])
        columns = list(next(r["choice_cells"] for r in rows if r["choices"]))
        more, choice_table = _count_table(rows, "choice_cells", columns, reading.choices_title)
        lines += ["", reading.choices_caption, "", *more]
    Console().print(table)
    if details:
        Console().print(detail_table)
    if choice_table is not None:
        Console().print(choice_table)
    if chosen is not None:
        lines = [f"Training seeds {', '.join(map(str, chosen))} only (`report.py --failures "
                 f"RUN --seeds ...`); failures.md pools every seed.", "", *lines]
    out = run / failures_name(seeds)
    common.write_atomic(out, "\n".join(lines) + "\n")
    print(f"wrote {out}")
    return rows


# ---------------------------------------------------------------------------------------------
# Ablations (ablate.sh): one results table per setting, gathered into one table and one figure
def eval_dtype(run: Path, method: str, seeds: list) -> str:
    """The dtype(s) a method's evaluations ran in, from their args files: settings of one ablation
    can come from machines where --dtype auto meant bf16 or fp32 (greedy episodes can differ)."""
    return ", ".join(sorted({recorded_dtype(run, method, seed) for seed in seeds}))


def ablation(root: Path) -> list[dict]:
    """Every ROOT/<setting>/ that has a setting.json ({"ablation", "value", "label"}) gets its results
    table (as run.sh builds it); the rows are gathered with the setting's value into ROOT/ablation.jsonl
    and .md, and ROOT/ablation.png plots success vs the value: one line per method, test solid, ood
    dashed, bars = 95% interval (over seeds, never narrower than over all episodes pooled)."""
    rows = []
    for setting in sorted(root.glob("*/setting.json")):
        meta = common.read_jsonl(setting, require=common.SETTING)[0]
        for r in results_table(setting.parent):
            rows.append({"ablation": meta["ablation"], "value": meta["value"], "setting": meta["label"], **r,
                         "dtype": eval_dtype(setting.parent, r["method"], r["seeds"])})
    if not rows:
        raise common.UserError(f"{root}: no */setting.json with evaluations (run ablate.sh first)")
    rows.sort(key=lambda r: (r["split"] != "test", r["method"], r["value"]))
    common.write_jsonl(root / "ablation.jsonl", rows)
    lines = ["| setting | method | split | seeds | episodes | success % (±95%) | gain vs IL | score (mean) | dtype |",
             "|" + "---|" * 9]
    for r in rows:
        gain = f"{100 * r['gain_vs_il']:+.1f}" if "gain_vs_il" in r else ""
        score = f"{r['score']:.3f}" if "score" in r else ""
        lines.append(f"| {r['setting']} | {r['method']} | {r['split']} | {len(r['seeds'])} | {r['episodes']} | "
                     f"{100 * r['success']:.1f} ± {100 * r['ci95']:.1f} | {gain} | {score} | {r['dtype']} |")
    if any("auto*" in r["dtype"] for r in rows):
        lines.append("\nauto*: evaluated with --dtype auto before args files recorded what it became (dtype_resolved).")
    common.write_atomic(root / "ablation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))

    # left: success (the paper's measure), bars = 95% interval; right: the mean score, which still
    # moves where success sits near 0 (one run of few episodes per point: read it as a trend)
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    colors = {}
    kind = rows[0]["ablation"]
    methods = sorted({r["method"] for r in rows if r["method"] != "prompt-mapped"})
    for (method, split) in sorted({(r["method"], r["split"]) for r in rows if r["method"] != "prompt-mapped"}):
        mine = sorted((r for r in rows if r["method"] == method and r["split"] == split), key=lambda r: r["value"])
        nudge = 2 ** (0.04 * (methods.index(method) - len(methods) / 2))  # so equal points' bars do not hide each other
        x = [r["value"] * nudge for r in mine]
        style = dict(marker="o", linestyle="-" if split == "test" else "--", label=f"{method} ({split})")
        line = axes[0].errorbar(x, [r["success"] for r in mine], yerr=[r["ci95"] for r in mine], capsize=3,
                                color=colors.get(method), **style)
        colors.setdefault(method, line[0].get_color())
        pts = [(xi, r["score"]) for xi, r in zip(x, mine) if "score" in r]
        if pts:
            axes[1].plot(*zip(*pts), color=colors[method], **style)
    ticks = sorted({(r["value"], r["setting"]) for r in rows})
    for ax, label in zip(axes, ("success rate", "mean score (partial credit)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks([v for v, _ in ticks], [name for _, name in ticks])
        ax.minorticks_off()
        ax.set_xlabel("alternatives per expert state (K)" if kind == "k" else "fraction of the expert data")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(bottom=-0.02)  # not 0-1: at small scale every point sits below 0.3
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(root / "ablation.png", dpi=120)
    print(f"wrote {root / 'ablation.png'}")
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        return write_table(Path(args.table), results_table(Path(args.table), args.reference), args.reference)
    if args.failures:
        return failures(Path(args.failures), args.seeds)
    if args.left:
        return left(Path(args.left), args.seeds, args.arms, args.splits, bool(args.mapped), args.dtype)
    if args.check_dtype:
        for seed in args.seeds:
            check_seed_dtype(args.check_dtype, seed, args.dtype)
        return None
    return ablation(Path(args.ablation))


if __name__ == "__main__":
    common.run_main(main)

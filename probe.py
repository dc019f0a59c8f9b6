"""What the world model learned: next-observation prediction on held-out transitions (paper 4.2).

IWM trains the policy's weights to predict what the game answers to a move. Whether that helps the
policy is the study's question; whether the world model was learned at all is this one. A policy
that does not improve while its world model is right is a finding about transfer; a world model
that is wrong is a finding about the data.

For every transition of a held-out collection (collect.py on the `dev` split, with --consequential
so that the decisive moves are there), each model is asked, greedily, for the next observation
under the world model's own prompt (prompts.world_model_messages) and scored:
  exact      the predicted observation equals the true one (cut to --max-words words, as iwm.py cuts
             its targets); read separately for the expert's moves, the consequential moves (those
             that end the game or change its score) and the other alternatives;
  ends       on the moves that end the game (lost or won): the share whose prediction says so
             ("(The game ends: lost.)", the targeted data's note, iwm.py --targeted);
  false ends on the moves that do not end it: the share whose prediction says it ends;
  outcome    on the moves whose answer says what decides the game (the env's `outcome` hook;
             twx-cooking: the verb a cook move gets, so which appliance cooks which way), the
             share whose prediction names the same outcome.
A model never trained on the note (the base model, IL, the paper's IWM) cannot say a move ends the
game: its `ends` is 0 by construction, which is the point (its data never showed it).

Inputs:  --data: rollouts.jsonl of held-out games; --models: names or checkpoints (--labels names them)
Outputs: OUT/probe.jsonl (one line per model and transition), OUT/probe.md (the table), OUT/probe_args.json;
         --rescore OUT scores OUT/probe.jsonl's predictions again (no model runs) and rewrites the rest

Examples:
  python collect.py --env twx-cooking --split dev --tasks 30 --k-iwm 2 --k-sr 0 --consequential --out runs/probe
  python probe.py --data runs/probe/rollouts.jsonl --models smollm2-135m runs/study2/ckpt/iwm-stage1-s0 \
      runs/study2/ckpt/iwm-targeted-stage1-s0 --labels base iwm-stage1 targeted-stage1 --out runs/probe
  python probe.py --rescore results/study2/probe/iwm-s0
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from rich.console import Console
from rich.table import Table

import agent
import common
import envs
import models
import prompts

KINDS = ("expert", "consequential", "other")


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="rollouts.jsonl of held-out games (collect.py --split dev --consequential)")
    p.add_argument("--models", nargs="+", default=None, help="model names or checkpoint folders to probe")
    p.add_argument("--labels", nargs="+", default=None, help="a name per model in the table (default: the folder names)")
    p.add_argument("--transitions", type=common.at_least(2), default=300,
                   help="at most this many transitions: half consequential, half the expert's and the other moves (seeded samples)")
    p.add_argument("--max-words", type=common.at_least(1), default=40, help="cut observations to this many words (iwm.py's cut)")
    p.add_argument("--max-new-tokens", type=common.at_least(1), default=64, help="prediction length cap")
    p.add_argument("--batch", type=common.at_least(1), default=16, help="prompts per generate call")
    p.add_argument("--seed", type=common.at_least(0), default=0, help="random seed (the sample of transitions)")
    p.add_argument("--threads", type=common.at_least(0), default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where it is faster than fp32 here), bf16, fp32")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--rescore", default=None, metavar="OUT",
                   help="score the predictions in OUT/probe.jsonl again and rewrite OUT's summary and table "
                        "(no model runs; the env is read from the --data its probe_args.json names)")
    args = p.parse_args(argv)
    if args.rescore and (args.data or args.models or args.out):
        p.error("--rescore OUT goes alone (the probe's own arguments are in OUT/probe_args.json)")
    if not args.rescore and not (args.data and args.models and args.out):
        p.error("give --data, --models and --out (or --rescore OUT)")
    if args.labels and len(args.labels) != len(args.models):
        p.error(f"--labels: {len(args.labels)} names for {len(args.models)} models")
    return args


def transitions(rows: list[dict], limit: int, seed: int) -> list[dict]:
    """The probe's transitions: {"state", "action", "next", "kind", "ends"}; half of the limit from
    the consequential moves and half from the expert's and the other alternatives (seeded samples;
    where one kind has fewer, the other fills the rest)."""
    decisive, rest = [], []
    for r in rows:
        rest.append({"id": f"{r['id']}/0", "state": r["state"], "action": r["expert"]["action"],
                     "next": r["expert"]["next_state"], "kind": "expert", "ends": r["expert"].get("ends")})
        for j, a in enumerate(r["alternatives"], 1):
            t = {"id": f"{r['id']}/{j}", "state": r["state"], "action": a["action"], "next": a["next_state"],
                 "kind": "consequential" if a["source"] == "consequential" else "other", "ends": a.get("ends")}
            (decisive if t["kind"] == "consequential" else rest).append(t)
    rng = random.Random(seed)
    n_decisive = min(len(decisive), max(limit // 2, limit - len(rest)))
    decisive = rng.sample(decisive, n_decisive)
    rest = rng.sample(rest, min(len(rest), limit - n_decisive))
    return decisive + rest


def score(prediction: str, t: dict, max_words: int | None, env: str | None = None) -> dict:
    """One prediction against the truth: the observation alone (the note, if any, taken off),
    whether it says that the move ends the game, and, on a move whose answer names what decides the
    game (envs.outcome; env None: no such move), whether the prediction names the same outcome
    (outcome_right; None on the other moves)."""
    text = prediction.strip()
    text = text[len("Observation:"):].strip() if text.startswith("Observation:") else text
    says = next((kind for kind in ("lost", "won") if prompts.GAME_ENDS.format(kind) in text), None)
    for kind in ("lost", "won"):
        text = text.replace(prompts.GAME_ENDS.format(kind), "").strip()
    truth = prompts.squash(t["next"], max_words)
    decides = envs.outcome(env, t["action"], truth) if env else None
    return {"exact": text == truth, "says_ends": says, "ends_right": says == t["ends"],
            "outcome_right": None if not decides else envs.outcome(env, t["action"], text) == decides}


def summarize(label: str, scored: list[dict]) -> dict:
    def share(rows, key):
        return round(sum(bool(r[key]) for r in rows) / len(rows), 4) if rows else None

    row = {"model": label, "n": len(scored), "exact": share(scored, "exact")}
    for kind in KINDS:
        part = [r for r in scored if r["kind"] == kind]
        row[f"exact_{kind}"], row[f"n_{kind}"] = share(part, "exact"), len(part)
    ending = [r for r in scored if r["ends"]]
    other = [r for r in scored if not r["ends"]]
    row["ends"], row["n_ends"] = share(ending, "ends_right"), len(ending)
    row["false_ends"] = share(other, "says_ends")
    decisive = [r for r in scored if r.get("outcome_right") is not None]
    row["outcome"], row["n_outcome"] = share(decisive, "outcome_right"), len(decisive)
    return row


def write_table(rows: list[dict], out: Path) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.0f}%"

    first = rows[0]
    cols = ("model", "transitions", "exact", f"expert ({first['n_expert']})", f"consequential ({first['n_consequential']})",
            f"other ({first['n_other']})", f"says it ends ({first['n_ends']} that do)", "says it ends (others)",
            f"names the outcome ({first.get('n_outcome', 0)} decisive)")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table = Table(title="what the world model learned (greedy next-observation prediction)")
    for c in cols:
        table.add_column(c)
    for r in rows:
        cells = [r["model"], str(r["n"]), pct(r["exact"]), pct(r["exact_expert"]), pct(r["exact_consequential"]),
                 pct(r["exact_other"]), pct(r["ends"]), pct(r["false_ends"]), pct(r.get("outcome"))]
        lines.append("| " + " | ".join(cells) + " |")
        table.add_row(*cells)
    Console().print(table)
    md = "\n".join(lines) + "\n"
    common.write_atomic(out / "probe.md", md)
    return md


def env_of(rows: list[dict]) -> str:
    """The env of a collection (every rollout line names it)."""
    return rows[0]["env"]


def rescore(out: Path) -> list[dict]:
    """OUT/probe.jsonl's predictions scored again against their (already cut) truths: for a table
    with a column added since, without running the models."""
    lines = common.read_jsonl(out / "probe.jsonl")
    try:
        data = json.loads((out / "probe_args.json").read_text())["data"]
    except (OSError, ValueError, KeyError) as e:
        raise common.UserError(f"{out / 'probe_args.json'}: no readable probe arguments ({e})") from None
    env = env_of(common.read_jsonl(data, require=common.ROLLOUT))
    by_model = {}
    for line in lines:
        t = {"next": line["true"], "ends": line["ends"], "action": line["action"]}
        line.update(score(line["predicted"], t, None, env))
        by_model.setdefault(line["model"], []).append(line)
    summary = [summarize(label, scored) for label, scored in by_model.items()]
    common.write_jsonl(out / "probe.jsonl", lines)
    common.write_jsonl(out / "probe_summary.jsonl", summary)
    write_table(summary, out)
    print(f"rescored {out / 'probe.md'}")
    return summary


def main(argv=None):
    args = parse_args(argv)
    if args.rescore:
        return rescore(Path(args.rescore))
    rows = common.read_jsonl(args.data, require=common.ROLLOUT)
    probe = transitions(rows, args.transitions, args.seed)
    if not probe:
        raise common.UserError(f"{args.data}: no transitions")
    out = Path(args.out)
    common.lock_output(out, "probe")
    common.set_threads(args.threads)
    labels = args.labels or [Path(m).name for m in args.models]
    chats = [prompts.world_model_messages(t["state"], t["action"]) for t in probe]
    env = env_of(rows)
    lines, summary = [], []
    for name, label in zip(args.models, labels):
        model, tok = models.load_model(name, dtype=args.dtype)
        model.eval()
        answers = agent.generate(model, tok, chats, max_new_tokens=args.max_new_tokens, temperature=0.0,
                                 batch_size=args.batch, progress=f"probe {label}")
        scored = []
        for t, answer in zip(probe, answers):
            s = {"model": label, "id": t["id"], "kind": t["kind"], "action": t["action"], "ends": t["ends"],
                 "true": prompts.squash(t["next"], args.max_words), "predicted": answer,
                 **score(answer, t, args.max_words, env)}
            scored.append(s)
        lines += scored
        summary.append(summarize(label, scored))
        del model
    models.note_dtype(args)
    common.save_args(args, out, "probe_args.json")
    common.write_jsonl(out / "probe.jsonl", lines)
    common.write_jsonl(out / "probe_summary.jsonl", summary)
    write_table(summary, out)
    print(f"wrote {out / 'probe.md'}")
    return summary


if __name__ == "__main__":
    common.run_main(main)

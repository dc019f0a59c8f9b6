"""Self-Reflection data, paper section 4.3, Eq. 4:  L_SR = -sum log p(c_i, a_i | s_i).

For each expert state, one prompt shows the situation s_i, the action taken a_i and what it led to,
and each policy-proposed alternative a_i^j with what it led to (rollouts.jsonl). The policy model
itself (the untuned --model) writes a short first-person reasoning c_i for why a_i is the move to make.
The training example is: input s_i, target "Thought: c_i" then "Action: a_i". train.py mixes these
with expert.jsonl and trains for the imitation budget.

The authors' fixes are applied: no label words (expert, correct, best, "Action 1"...), reasoning
as a plan made before acting, length asked for in the prompt (not forced by a token cap, which cuts
sentences). Filters drop: a reflection that concludes on a different action, one with a banned word,
one that repeats itself, one too short to say anything, one cut off mid-sentence by the token cap.

--conclude model: the model must end on "Action: <a_i>" itself (the paper's check).
--conclude append: the model writes only the reasoning and we append the action; a reasoning that
  names an "Action:" other than a_i is still dropped. A 135M model almost never ends on the
  requested action (measured: 0 of 12 in a probe), so `model` would drop nearly everything at
  that size; `append` is the documented fallback used by run.sh for the embedded model.

Inputs:  RUN/rollouts.jsonl (collect.py, with --k-sr > 0)
Outputs: OUT (default RUN)/reflections.jsonl (every generated text with its verdict; the resume log),
         OUT/reflect.jsonl (kept examples, {"id", "messages", "meta"}), OUT/reflect_stats.json
Several processes or machines: --shard I/N --out DIR_I each; the batches are fixed and seeded by
their index, so `cat DIR_0/reflect.jsonl DIR_1/reflect.jsonl ...` is the one-process file.

Examples:
  python reflect.py --run runs/demo --model smollm2-135m --show 2
  python reflect.py --run runs/demo --model Qwen/Qwen2.5-1.5B-Instruct --conclude model --k 3
"""
from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from tqdm import tqdm

import agent
import common
import models
import prompts


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="run folder holding rollouts.jsonl")
    p.add_argument("--model", default=models.EMBEDDED, help="the model that writes reflections (the initial policy)")
    p.add_argument("--k", type=common.at_least(1), default=3, help="at most K policy alternatives shown per state (paper: 2-4)")
    p.add_argument("--conclude", choices=["model", "append"], default="append",
                   help="who writes the final 'Action: a_i' line (see the docstring)")
    p.add_argument("--temperature", type=common.at_least(0, float, high=100), default=0.7, help="sampling temperature of reflections")
    p.add_argument("--top-k", type=common.at_least(0), default=0, help="sample only from the K likeliest tokens (0 = off: the full distribution)")
    p.add_argument("--top-p", type=common.at_least(0, float, strict=True, high=1), default=1.0, help="sample only from the smallest set of tokens holding this much probability (1 = off)")
    p.add_argument("--max-new-tokens", type=common.at_least(1), default=96, help="safety cap; the prompt asks for two sentences")
    p.add_argument("--min-words", type=common.at_least(0), default=6, help="drop reflections shorter than this")
    p.add_argument("--batch", type=common.at_least(1), default=16, help="prompts per generate call (also the resume unit)")
    p.add_argument("--shard", default="0/1", help="I/N: write reflections for the I-th of N contiguous parts of the states")
    p.add_argument("--out", default=None, help="output folder (default: RUN)")
    p.add_argument("--show", type=common.at_least(0), default=0, help="print N kept examples for a person to read")
    p.add_argument("--seed", type=common.at_least(0), default=0, help="random seed")
    p.add_argument("--threads", type=common.at_least(0), default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where it is faster than fp32 here: native bf16 CPU flags or CUDA, models.fast_bf16), bf16, fp32")
    return p.parse_args(argv)


def reflection_prompt(row: dict, k: int, conclude: bool) -> list[dict]:
    alts = [(a["action"], a["next_state"]) for a in row["alternatives"] if a["source"] == "policy"][:k]
    return prompts.reflection_messages(row["state"], row["expert"]["action"], row["expert"]["next_state"],
                                       alts, conclude)


def repeats(text: str) -> bool:
    """True when the text loops: a sentence said twice, or a 4-word sequence three times."""
    sentences = [s.strip().lower() for s in re.split(r"[.!?]\s+", text) if len(s.split()) >= 3]
    if len(sentences) != len(set(sentences)):
        return True
    words = text.lower().split()
    grams = [" ".join(words[i: i + 4]) for i in range(len(words) - 3)]
    return any(grams.count(g) >= 3 for g in set(grams))


def judge(text: str, action: str, conclude: str, min_words: int) -> tuple[str | None, str]:
    """(reason to drop or None, the cleaned reasoning c_i)."""
    idx = text.rfind("Action:")
    said = agent.parse_action(text) if idx >= 0 else None
    thought = prompts.squash(text[:idx] if idx >= 0 else text)
    thought = re.sub(r"^(Thought|Reasoning)\s*:\s*", "", thought, flags=re.I)
    if conclude == "model" and said != action:
        return "wrong or missing conclusion", thought
    if conclude == "append" and said is not None and said != action:
        return "wrong or missing conclusion", thought
    if prompts.has_banned_words(thought):
        return "label word", thought
    if repeats(thought):
        return "repetition", thought
    if len(thought.split()) < min_words:
        return "too short", thought
    if not thought.endswith((".", "!", "?", '"', "'")):
        return "cut off", thought  # hit the token cap mid-sentence: the length is asked for in the prompt
    return None, thought


def show(examples: list[dict], rows: dict, n: int) -> None:
    console = Console()
    for e in examples[:n]:
        row = rows[e["id"]]
        alts = "\n".join(f"  {a['action']} -> {prompts.squash(a['next_state'], 20)}"
                         for a in row["alternatives"] if a["source"] == "policy")
        body = (f"[dim]{row['state']}[/dim]\n\n[b]expert:[/b] {row['expert']['action']} -> "
                f"{prompts.squash(row['expert']['next_state'], 20)}\n[b]alternatives:[/b]\n{alts}\n\n"
                f"[green]{e['messages'][-1]['content']}[/green]")
        console.print(Panel(body, title=e["id"]))


def main(argv=None):
    args = parse_args(argv)
    run = Path(args.run)
    out = Path(args.out or run)
    common.lock_output(out, "reflect")
    rows = [r for r in common.read_jsonl(run / "rollouts.jsonl", require=common.ROLLOUT)
            if any(a["source"] == "policy" for a in r["alternatives"])]
    if not rows:
        raise common.UserError(f"{run / 'rollouts.jsonl'}: no policy alternatives (run collect.py with --k-sr > 0)")
    common.set_threads(args.threads)
    # fixed batches of states, each seeded by its index: a resumed run, or a shard, samples the same texts
    batches = [rows[i: i + args.batch] for i in range(0, len(rows), args.batch)]
    mine = common.shard_range(len(batches), args.shard)
    rows = [r for b in mine for r in batches[b]]
    log = out / "reflections.jsonl"
    done = common.resume_jsonl(log)
    todo = [b for b in mine if any(r["id"] not in done for r in batches[b])]
    if todo:
        model, tok = models.load_model(args.model, dtype=args.dtype, device=models.shard_device(args.shard))
        model.eval()
    models.note_dtype(args)
    common.save_args(args, out, "reflect_args.json")  # after the inputs loaded
    if todo:
        for b in tqdm(todo, desc="reflections (batches)"):
            part = batches[b]
            common.seed_unit(args.seed, b)
            chats = [reflection_prompt(r, args.k, args.conclude == "model") for r in part]
            texts = agent.generate(model, tok, chats, max_new_tokens=args.max_new_tokens,
                                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                    batch_size=args.batch)
            for r, text in zip(part, texts):
                if r["id"] in done:  # written before an interruption
                    continue
                reason, thought = judge(text, r["expert"]["action"], args.conclude, args.min_words)
                common.append_jsonl(log, {"id": r["id"], "text": text, "thought": thought, "dropped": reason})
    by_id = {r["id"]: r for r in rows}
    kept, reasons = [], {}
    for ref in common.read_jsonl(log, require=common.REFLECTION):
        if ref["id"] not in by_id:
            continue
        if ref["dropped"]:
            reasons[ref["dropped"]] = reasons.get(ref["dropped"], 0) + 1
            continue
        row = by_id[ref["id"]]
        kept.append({"id": ref["id"],
                     "messages": prompts.policy_messages(row["state"], prompts.action_answer(row["expert"]["action"], ref["thought"])),
                     "meta": {"task_id": row["task_id"], "step": row["step"], "conclude": args.conclude}})
    order = {r["id"]: i for i, r in enumerate(rows)}
    kept.sort(key=lambda e: order[e["id"]])  # state order, whatever order the log was written in
    common.write_jsonl(out / "reflect.jsonl", kept)
    stats = {"states": len(rows), "kept": len(kept), "dropped": reasons}
    common.write_atomic(out / "reflect_stats.json", common.dumps(stats) + "\n")
    table = Table(title="reflections")
    table.add_column("verdict")
    table.add_column("count")
    table.add_row("kept", str(len(kept)))
    for k, v in sorted(reasons.items()):
        table.add_row(f"dropped: {k}", str(v))
    Console().print(table)
    if args.show:
        show(kept, by_id, args.show)


if __name__ == "__main__":
    common.run_main(main)

"""Implicit World Modelling data, paper section 4.2, Eq. 3:  L_IWM = -sum log p(s_i^j | s_i, a_i^j).

Turns rollouts.jsonl into chat examples that teach the policy's own weights to predict what the game
answers: input = the state s_i and an action a, target = the next observation s'. Both the expert's
transition and the alternatives are used; invalid actions are kept on purpose ("Unknown action",
"You can't ..." are facts about the world too): source "valid" = uniform draws from the valid actions
(the paper's), "proposal" = the untuned policy's own proposals executed as written (collect.py
--k-proposals), so the world model also sees what its habitual invalid moves do.

Two details keep world modelling from hurting the policy (see prompts.world_model_messages):
  * its own system prompt ("you are a world model") and an `Observation: ...` target, never
    `Action: ...`, so the policy does not learn to answer with observations;
  * targets are cut to --max-words words (deterministic truncation, not a summary), so a long room
    description does not drown the short, decisive outcomes ("You grill the chicken wing").

train.py then runs the paper's two stages: one pass over iwm.jsonl, then imitation on expert.jsonl.

Inputs:  RUN/rollouts.jsonl (collect.py), RUN/expert.jsonl (for --ratio)
Outputs: RUN/iwm.jsonl  ({"id", "messages", "meta"} per example), RUN/iwm_args.json

Examples:
  python iwm.py --run runs/demo
  python iwm.py --run runs/demo --sources valid policy expert --max-words 30 --ratio 4
"""
from __future__ import annotations

import random
from pathlib import Path

import common
import prompts

SOURCES = ("valid", "policy", "proposal", "expert")


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="run folder holding rollouts.jsonl")
    p.add_argument("--sources", nargs="+", default=["valid", "proposal", "expert"], choices=SOURCES,
                   help="which transitions to learn from: the paper's uniform valid alternatives + expert, and the "
                        "policy's own proposals as written, invalid ones kept (present when collect.py had --k-proposals)")
    p.add_argument("--k", type=common.at_least(0), default=0, help="use at most K alternatives per state (0 = all collected)")
    p.add_argument("--max-words", type=common.at_least(1), default=40, help="cut each target observation to this many words")
    p.add_argument("--ratio", type=common.at_least(0, float, high=1e4), default=0, help="keep at most RATIO x (expert examples); 0 = keep all")
    p.add_argument("--targeted", action="store_true",
                   help="world-model data aimed at the dynamics that decide the game (targeted_examples): as many "
                        "examples as the --sources selection gives, needs collect.py --consequential")
    p.add_argument("--repeat-cap", type=common.at_least(0, float, high=1), default=0.05,
                   help="--targeted: at most this share of the examples may have one and the same target text")
    p.add_argument("--seed", type=common.at_least(0), default=0, help="random seed (sub-sampling)")
    p.add_argument("--out", default=None, help="output file (default RUN/iwm.jsonl)")
    return p.parse_args(argv)


def transitions(row: dict, sources, k: int):
    """(action, next_state, source) triples of one rollout line, in file order."""
    if "expert" in sources:
        yield row["expert"]["action"], row["expert"]["next_state"], "expert"
    alts = [a for a in row["alternatives"] if a["source"] in sources]
    for a in alts[:k] if k else alts:
        yield a["action"], a["next_state"], a["source"]


def build_examples(rollouts: list[dict], sources, k: int, max_words: int) -> list[dict]:
    examples = []
    for row in rollouts:
        for j, (action, nxt, source) in enumerate(transitions(row, sources, k)):
            examples.append({"id": f"{row['id']}/{j}",
                             "messages": prompts.world_model_messages(row["state"], action, nxt, max_words),
                             "meta": {"task_id": row["task_id"], "step": row["step"], "source": source}})
    return examples


def targeted_examples(rollouts: list[dict], sources, k: int, max_words: int, repeat_cap: float,
                      seed: int) -> list[dict]:
    """World-model data aimed at what decides the game, exactly as many examples as the paper's data
    (build_examples on the same rollouts and --sources), so that one epoch of it is the same number of
    steps W and the arms it is compared with stay the exact control. In order of priority:
      1. every expert transition (as in the paper's data);
      2. every consequential transition (collect.py --consequential: each valid move that ends the
         game, changes its score, or that the env names), with how it ends written after the
         observation when it ends the game ("(The game ends: lost.)");
      3. the paper's alternatives to fill the rest, drawn at random (seeded), where no target text
         may fill more than --repeat-cap of the examples: the paper's data repeats one error text
         ("Unknown action ...") in up to 40% of them, and a constant target teaches nothing (when the
         cap leaves too few, the rest is filled in the same random order without it).
    Nothing here knows the game: "consequential" and "ends" come from executing the moves."""
    size = len(build_examples(rollouts, sources, k, max_words))
    rng = random.Random(seed)
    cap = max(1, int(repeat_cap * size))
    chosen, count, spare = [], {}, []

    def add(row, j, action, nxt, source, ends=None, capped=False) -> bool:
        target = prompts.squash(nxt, max_words)
        if capped and count.get(target, 0) >= cap:
            return False
        count[target] = count.get(target, 0) + 1
        chosen.append({"id": f"{row['id']}/{j}",
                       "messages": prompts.world_model_messages(row["state"], action, nxt, max_words, ends),
                       "meta": {"task_id": row["task_id"], "step": row["step"], "source": source,
                                **({"ends": ends} if ends else {})}})
        return True

    consequential = 0
    for row in rollouts:
        add(row, 0, row["expert"]["action"], row["expert"]["next_state"], "expert", row["expert"].get("ends"))
        for j, a in enumerate(row["alternatives"], 1):
            if a["source"] == "consequential":
                consequential += add(row, j, a["action"], a["next_state"], "consequential", a.get("ends"))
            elif a["source"] in sources:
                spare.append((row, j, a))
    if not consequential:
        raise common.UserError("no consequential transitions in rollouts.jsonl: collect with collect.py --consequential")
    if len(chosen) > size:  # more decisive moves than the budget holds: a seeded sample of them
        keep = sorted(rng.sample(range(len(chosen)), size))
        return [chosen[i] for i in keep]
    rng.shuffle(spare)
    left = []
    for row, j, a in spare:
        if len(chosen) < size and not add(row, j, a["action"], a["next_state"], a["source"], a.get("ends"), capped=True):
            left.append((row, j, a))
    for row, j, a in left[: size - len(chosen)]:
        add(row, j, a["action"], a["next_state"], a["source"], a.get("ends"))
    if len(chosen) < size:  # fewer transitions in all than the paper's selection: cannot happen with its sources
        raise common.UserError(f"--targeted: {len(chosen)} transitions in all, the paper's data has {size}")
    order = {row["id"]: i for i, row in enumerate(rollouts)}  # back in state order, the file's order
    return sorted(chosen, key=lambda e: (order[e["id"].rsplit("/", 1)[0]], int(e["id"].rsplit("/", 1)[1])))


def main(argv=None):
    args = parse_args(argv)
    run = Path(args.run)
    rows = common.read_jsonl(run / "rollouts.jsonl", require=common.ROLLOUT)
    if args.targeted:
        examples = targeted_examples(rows, args.sources, args.k, args.max_words, args.repeat_cap, args.seed)
    else:
        examples = build_examples(rows, args.sources, args.k, args.max_words)
    if args.ratio > 0:
        cap = int(args.ratio * len(common.read_jsonl(run / "expert.jsonl")))
        if len(examples) > cap:
            keep = sorted(random.Random(args.seed).sample(range(len(examples)), cap))
            examples = [examples[i] for i in keep]
    if not examples:
        raise common.UserError(f"{run / 'rollouts.jsonl'}: no transitions of sources {args.sources}")
    out = Path(args.out) if args.out else run / "iwm.jsonl"
    common.lock_output(out.parent, "iwm")
    common.save_args(args, out.parent, "iwm_args.json")
    common.write_jsonl(out, examples)
    by = {}
    for e in examples:
        by[e["meta"]["source"]] = by.get(e["meta"]["source"], 0) + 1
    print(f"wrote {len(examples)} world-model examples to {out} from {len(rows)} states ({by})")


if __name__ == "__main__":
    common.run_main(main)

"""Early experience, paper section 4.1: expert trajectories + the agent's own alternatives, executed.

For every training task: play the expert's gold path; at each expert state s_i, propose alternative
actions a_i^j (each different from the expert's a_i), execute each ONE step from s_i and record the
state s_i^j it leads to. No reward is used by the methods; it is recorded only for inspection.

  D_expert  = {(s_i, a_i)}             -> expert.jsonl    (one line per expert step)
  D_rollout = {(s_i, a_i^j, s_i^j)}    -> rollouts.jsonl  (one line per expert state)

Where alternatives come from (the paper's appendix uses both, for different methods):
  --k-iwm K   K drawn uniformly from the valid actions             source "valid"  (world modelling;
              an env without a finite action list builds them: envs/bfcl.py fills tool calls)
  --k-sr K    K sampled from the untuned policy at temperature 1.0  source "policy" (reflection),
              de-duplicated, never the expert action; an invalid or repeated proposal is replaced by
              a uniform draw from the unused valid actions (marked "replaced": true).
  --k-proposals K  the first K distinct proposals of the same samples, executed AS WRITTEN, invalid
              ones included (source "proposal", "valid": true/false): world-model data about the moves
              the policy really makes, with the game's error texts ("Unknown action", "You can't ...")
              as targets. A small policy fails mostly by repeating invalid moves, which uniform valid
              alternatives never show.
  --consequential  every valid action of the state, executed, kept when it can decide the game (it
              ends the game, changes the score, or the env names it: source "consequential"). Uniform
              draws rarely hit the decisive move (the wrong cooking appliance, which ends the game);
              iwm.py --targeted builds world-model data aimed at these dynamics.
A branch that ends the game records how ("ends": "won" or "lost").
Branching puts the env back into s_i (snapshot/restore; reset + replay for TextWorldExpress) and
checks, for every branch, that the restored state text equals the expert state's text.

Tasks are processed in chunks of --chunk tasks: the policy's proposals for a whole chunk are one
batched generate call (each prompt is read once and its cache shared by its K samples), seeded by the
chunk's index, so a rerun, a resumed run and a --shard I/N run give the same lines.

Inputs:  an env (--env, --split, --tasks); --model for policy proposals (only when --k-sr or --k-proposals > 0)
Outputs: OUT/expert.jsonl, OUT/rollouts.jsonl, OUT/collect_args.json, OUT/collect_stats.json

Examples:
  python collect.py --env twx-cooking --split train --tasks 100 --k-iwm 4 --k-sr 3 --model smollm2-135m --out runs/demo
  python collect.py --env twx-cooking --tasks 20 --k-iwm 4 --k-sr 0 --k-proposals 2 --out runs/iwm-own-moves
  python collect.py --env bfcl --tasks 8 --k-iwm 2 --k-sr 2 --model smollm2-135m --out runs/bfcl
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

import agent
import common
import envs
import models
import prompts


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="twx-cooking", help=f"environment: {', '.join(envs.ENV_NAMES)}")
    p.add_argument("--split", default="train", help="split whose tasks are collected (train)")
    p.add_argument("--tasks", type=common.at_least(1), default=100, help="number of tasks (the first N of the split)")
    p.add_argument("--k-iwm", type=common.at_least(0), default=4, help="uniform valid alternatives per expert state (world modelling)")
    p.add_argument("--k-sr", type=common.at_least(0), default=3, help="policy-sampled alternatives per expert state (reflection)")
    p.add_argument("--k-proposals", type=common.at_least(0), default=0,
                   help="policy proposals per expert state executed as written, invalid ones kept (world modelling)")
    p.add_argument("--consequential", action="store_true",
                   help="also execute every valid action at each expert state and keep those that can decide the game "
                        "(end it, change its score, or named by the env): source \"consequential\", for iwm.py --targeted")
    p.add_argument("--model", default=models.EMBEDDED, help="the initial policy that proposes alternatives")
    p.add_argument("--temperature", type=common.at_least(0, float, high=100), default=1.0, help="sampling temperature of policy proposals")
    p.add_argument("--top-k", type=common.at_least(0), default=0, help="sample only from the K likeliest tokens (0 = off: the full distribution)")
    p.add_argument("--top-p", type=common.at_least(0, float, strict=True, high=1), default=1.0, help="sample only from the smallest set of tokens holding this much probability (1 = off)")
    p.add_argument("--max-new-tokens", type=common.at_least(1), default=24, help="length cap of a proposal")
    p.add_argument("--chunk", type=common.at_least(1), default=8, help="tasks per batched proposal call (also the resume unit)")
    p.add_argument("--shard", default="0/1", help="I/N: process the I-th of N contiguous parts of the tasks")
    p.add_argument("--seed", type=common.at_least(0), default=0, help="random seed")
    p.add_argument("--threads", type=common.at_least(0), default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where it is faster than fp32 here: native bf16 CPU flags or CUDA, models.fast_bf16), bf16, fp32")
    p.add_argument("--subset-of", default=None, metavar="DIR",
                   help="take the first --tasks tasks of the collection in DIR instead of playing them "
                        "(the data ablation's fractions are prefixes of one collection)")
    p.add_argument("--out", required=True, help="run folder")
    return p.parse_args(argv)


def play_expert(env, task: dict) -> list[dict]:
    """The expert trajectory: the state text, expert action, next observation and a snapshot of
    the env at each step. Returns [] if the gold path does not reach success (kept out of the data)."""
    gold = env.expert_actions(task)
    env.reset(task)
    steps = []
    for i, action in enumerate(gold):
        state = prompts.state_text(env.view())
        snap = env.snapshot()
        obs, reward, done = env.step(action)
        steps.append({"step": i, "state": state, "action": action, "next_state": obs,
                      "reward": reward, "done": done, "snapshot": snap,
                      **({"ends": "won" if env.success() else "lost"} if done else {})})
        if done:
            break
    return steps if env.success() else []


def uniform_alternatives(rng: random.Random, env, exclude: set, k: int) -> list[str]:
    """k actions drawn uniformly from the env's valid actions minus `exclude` (envs/base.py
    alternatives; an env without a finite action list, like bfcl, builds its own candidates)."""
    return env.alternatives(rng, exclude, k)


def policy_alternatives(rng: random.Random, proposals: list[str], env, expert: str, k: int) -> list[dict]:
    """De-duplicate the policy's proposals, drop the expert action, replace invalid or repeated ones
    by uniform draws from the unused valid actions (the paper's rule). `env` is in the expert state."""
    chosen, seen = [], {expert}
    for text in proposals:
        a = agent.parse_action(text)
        if a not in seen and env.is_valid(a):
            chosen.append({"action": a, "replaced": False})
            seen.add(a)
    for a in uniform_alternatives(rng, env, seen | {c["action"] for c in chosen}, k - len(chosen)):
        chosen.append({"action": a, "replaced": True})
    return chosen[:k]


def raw_proposals(proposals: list[str], expert: str, k: int) -> list[str]:
    """The first k distinct proposals other than the expert's action, as the policy wrote them: an
    invalid one is kept (its outcome, the game's error text, is what world modelling should learn)."""
    chosen = []
    for text in proposals:
        a = agent.parse_action(text)
        if a and a != expert and a not in chosen:
            chosen.append(a)
    return chosen[:k]


def branch(env, snap, state: str, action: str) -> dict:
    """Put the env back into the expert state and execute ONE alternative action from it."""
    env.restore(snap)
    # the alternative must run in the same game state (where replay re-samples randomness, as in two
    # ScienceWorld tasks, the restored state is another true sample of the same prefix: not checked)
    if env.deterministic(snap[0]) and not env.same_state(prompts.state_text(env.view()), state):
        raise RuntimeError(f"restored state differs from the expert state at {snap[0]['task_id']}")
    obs, reward, done = env.step(action)
    out = {"action": action, "next_state": obs, "reward": reward, "done": done}
    if done:  # how the move ended the game: what a world model should learn that this move does
        out["ends"] = "won" if env.success() else "lost"
    return out


def consequential_alternatives(env, snap, state: str, expert: str) -> list[dict]:
    """Every valid action of the expert state, other than the expert's, whose outcome can decide the
    game: one the env names (envs/base.py consequential), or one that, executed, ends the game or
    changes its score. Found by executing them all (uniform draws rarely hit them: a cook move is 1 of
    ~26 valid actions, and the wrong appliance, which ends the game, is what decides most lost games)."""
    env.restore(snap)
    before, valid = env.score(), [a for a in env.valid_actions() if a != expert]
    kept = []
    for a in valid:
        out = branch(env, snap, state, a)
        change = env.score() - before
        if env.consequential(a) or out["done"] or abs(change) > 1e-9:
            kept.append({**out, "source": "consequential", "score_change": round(change, 4)})
    return kept


def collect_chunk(env, chunk: list[dict], index: int, args, model, tok, env_name: str):
    """Expert lines and rollout lines for one chunk of tasks."""
    trajectories = [(task, play_expert(env, task)) for task in chunk]
    states = []  # (task, step dict) for every expert state, in order
    for task, steps in trajectories:
        for s in steps:
            states.append((task, s))
    proposals = [[] for _ in states]
    samples = max(args.k_sr, args.k_proposals)  # one set of samples serves both uses
    if samples > 0 and states:
        common.seed_unit(args.seed, index)
        chats = [prompts.policy_messages(s["state"]) for _, s in states]
        proposals = agent.generate(model, tok, chats, max_new_tokens=args.max_new_tokens,
                                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                    num_samples=samples, batch_size=8)
    expert_rows, rollout_rows, n_branches, n_replaced = [], [], 0, 0
    for (task, s), props in zip(states, proposals):
        rid = f"{task['task_id']}/{s['step']}"
        rng = random.Random(f"{args.seed}:{rid}")
        expert_rows.append({"id": rid, "env": env_name, "split": task["split"], "task_id": task["task_id"],
                            "step": s["step"], "state": s["state"], "action": s["action"],
                            "next_state": s["next_state"],
                            "messages": prompts.policy_messages(s["state"], prompts.action_answer(s["action"]))})
        env.restore(s["snapshot"])  # the alternatives are chosen (and judged valid) in the expert state
        uniform = uniform_alternatives(rng, env, {s["action"]}, args.k_iwm)
        policy = policy_alternatives(rng, props, env, s["action"], args.k_sr) if args.k_sr > 0 else []
        alts = []
        for a in uniform:
            alts.append({**branch(env, s["snapshot"], s["state"], a), "source": "valid"})
        if args.k_sr > 0:
            for c in policy:
                alts.append({**branch(env, s["snapshot"], s["state"], c["action"]), "source": "policy",
                             "replaced": c["replaced"]})
                n_replaced += c["replaced"]
        for a in raw_proposals(props, s["action"], args.k_proposals):
            env.restore(s["snapshot"])
            valid = env.is_valid(a)  # judged in the expert state, before the step
            alts.append({**branch(env, s["snapshot"], s["state"], a), "source": "proposal", "valid": valid})
        if args.consequential:
            alts += consequential_alternatives(env, s["snapshot"], s["state"], s["action"])
        n_branches += len(alts)
        rollout_rows.append({"id": rid, "env": env_name, "task_id": task["task_id"], "step": s["step"],
                             "state": s["state"],
                             "expert": {"action": s["action"], "next_state": s["next_state"],
                                        "reward": s["reward"], "done": s["done"],
                                        **({"ends": s["ends"]} if "ends" in s else {})},
                             "alternatives": alts})
    skipped = sum(1 for _, steps in trajectories if not steps)
    return expert_rows, rollout_rows, {"branches": n_branches, "replaced": n_replaced, "skipped": skipped}


def resume(out: Path) -> set:
    """Task ids whose expert and rollout lines are complete; any partial task is cut from both files."""
    ex_path, ro_path = out / "expert.jsonl", out / "rollouts.jsonl"
    if not ro_path.exists() or not ex_path.exists():
        for p in (ex_path, ro_path):
            p.unlink(missing_ok=True)
        return set()
    common.resume_jsonl(ex_path)
    common.resume_jsonl(ro_path)
    ex, ro = common.read_jsonl(ex_path, require=common.EXPERT), common.read_jsonl(ro_path, require=common.ROLLOUT)
    count = {}
    for r in ex:
        count[r["task_id"]] = count.get(r["task_id"], 0) + 1
    for r in ro:
        count[r["task_id"]] = count.get(r["task_id"], 0) - 1
    done = {t for t, c in count.items() if c == 0}
    common.write_jsonl(ex_path, [r for r in ex if r["task_id"] in done])
    common.write_jsonl(ro_path, [r for r in ro if r["task_id"] in done])
    return done


def first_tasks(src: Path, out: Path, n: int) -> list[str]:
    """Copy the lines of the first n tasks of the collection in SRC (expert.jsonl, rollouts.jsonl) to
    OUT, byte for byte. Returns their task ids, in order. Both files are read and checked whole
    before either is written: a malformed collection is one line, and nothing is written."""
    experts = common.read_jsonl(src / "expert.jsonl", require={"task_id": str})
    common.read_jsonl(src / "rollouts.jsonl", require=common.ROLLOUT)
    ids = list(dict.fromkeys(r["task_id"] for r in experts))
    if len(ids) < n:
        raise common.UserError(f"--subset-of {src}: holds {len(ids)} tasks, --tasks asks for {n}")
    keep = set(ids[:n])
    texts = {}
    for name in ("expert.jsonl", "rollouts.jsonl"):
        lines = (src / name).read_text(encoding="utf-8").splitlines(True)
        texts[name] = "".join(x for x in lines if x.strip() and json.loads(x)["task_id"] in keep)
    for name, text in texts.items():
        common.write_atomic(out / name, text)
    return ids[:n]


def totals(out: Path, task_ids: list[str]) -> dict:
    """What the collection in OUT holds: tasks, expert steps, executed alternatives (branches), policy
    proposals replaced by uniform draws, raw proposals executed (and how many were invalid), and tasks of TASK_IDS left out (gold path fails)."""
    ex, ro = ([] if not (out / f).exists() else common.read_jsonl(out / f, require=spec)
              for f, spec in (("expert.jsonl", common.EXPERT), ("rollouts.jsonl", common.ROLLOUT)))
    have = {r["task_id"] for r in ex}
    alts = [a for r in ro for a in r["alternatives"]]
    return {"tasks": len(have), "expert_steps": len(ex), "branches": len(alts),
            "replaced": sum(bool(a.get("replaced")) for a in alts),
            "proposals": sum(a["source"] == "proposal" for a in alts),
            "invalid_proposals": sum(a["source"] == "proposal" and not a["valid"] for a in alts),
            "skipped": sum(t not in have for t in task_ids)}


def main(argv=None):
    args = parse_args(argv)
    envs.check_split(args.split)
    env = envs.make(args.env)
    out = Path(args.out)
    common.lock_output(out, "collect")
    if args.subset_of:
        ids = first_tasks(Path(args.subset_of), out, args.tasks)
        stats = {**totals(out, ids), "subset_of": str(args.subset_of)}
        models.note_dtype(args)
        common.save_args(args, out, "collect_args.json")
        common.write_atomic(out / "collect_stats.json", common.dumps(stats) + "\n")
        print(f"kept the first {len(ids)} tasks of {args.subset_of}: {stats['expert_steps']} expert steps")
        return
    tasks = env.tasks(args.split)[: args.tasks]
    if len(tasks) < args.tasks:
        raise common.UserError(f"--tasks {args.tasks}: the {args.split} split of {args.env} has {len(tasks)} tasks")
    chunks = [tasks[i: i + args.chunk] for i in range(0, len(tasks), args.chunk)]
    mine = common.shard_range(len(chunks), args.shard)
    common.set_threads(args.threads)
    model = tok = None
    if args.k_sr > 0 or args.k_proposals > 0:
        model, tok = models.load_model(args.model, dtype=args.dtype, device=models.shard_device(args.shard))
        model.eval()
    models.note_dtype(args)
    common.save_args(args, out, "collect_args.json")  # after the inputs loaded
    done = resume(out)
    t0, run = time.time(), {"tasks": 0, "branches": 0}
    for index in tqdm(mine, desc="chunks of tasks"):
        chunk = chunks[index]
        if all(t["task_id"] in done for t in chunk):
            continue
        ex, ro, st = collect_chunk(env, chunk, index, args, model, tok, args.env)
        # a chunk is recomputed whole (its proposals are one seeded call), but the tasks of it that an
        # interrupted run finished are already in the files: only the others are appended
        common.append_jsonl_rows(out / "expert.jsonl", [r for r in ex if r["task_id"] not in done])
        common.append_jsonl_rows(out / "rollouts.jsonl", [r for r in ro if r["task_id"] not in done])
        run["tasks"] += sum(1 for t in chunk if t["task_id"] not in done) - st["skipped"]
        run["branches"] += st["branches"]
    env.close()
    # counted from the files, so a resumed run reports the whole collection; the speed is this run's
    stats = totals(out, [t["task_id"] for i in mine for t in chunks[i]])
    run["seconds"] = round(time.time() - t0, 1)
    run["branches_per_s"] = round(run["branches"] / max(run["seconds"], 1e-9), 1)
    stats["this_run"] = run
    common.write_atomic(out / "collect_stats.json", common.dumps(stats) + "\n")
    table = Table(title=f"collect ({args.env}, {args.split})")
    for k, v in stats.items():
        table.add_row(k, str(v))
    Console().print(table)


if __name__ == "__main__":
    common.run_main(main)

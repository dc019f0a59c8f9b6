"""Environments behind one protocol (envs/base.py). `make(name)` is the only entry point scripts use.

Names: twx-cooking (default), twx-coin, twx-mapreader (TextWorldExpress, envs/twx.py), bfcl (BFCL v3
multi-turn function calling, envs/bfcl.py) scienceworld (envs/scienceworld.py) and textcraft
(envs/textcraft.py). Each module's
docstring says what its splits contain.
"""
from envs.base import SPLITS, EnvError, TextEnv  # noqa: F401

ENV_NAMES = ("twx-cooking", "twx-coin", "twx-mapreader", "bfcl", "scienceworld", "textcraft")


# env name -> (module, class); the twx-* games are one class (envs/twx.py)
CLASSES = {"scienceworld": ("envs.scienceworld", "ScienceWorld"), "bfcl": ("envs.bfcl", "BFCLEnv"),
           "textcraft": ("envs.textcraft", "TextCraftEnv"), "twx-cooking": ("envs.twx", "TWXEnv"),
           "twx-coin": ("envs.twx", "TWXEnv"), "twx-mapreader": ("envs.twx", "TWXEnv")}


def env_class(name: str) -> type:
    """The class behind an env name (its module imported, no simulator started)."""
    import importlib

    base = name.split(":")[0]
    if base not in CLASSES:
        raise EnvError(f"unknown env {name!r}; choose one of: {', '.join(ENV_NAMES)}")
    module, cls = CLASSES[base]
    return getattr(importlib.import_module(module), cls)


def make(name: str) -> TextEnv:
    return env_class(name)(name)


def default_max_steps(name: str) -> int:
    """The env's episode step limit (evaluate.py --max-steps 0), without starting its simulator."""
    base = name.split(":")[0]
    if base.startswith("twx-") and base in CLASSES:  # one class, a step limit per game
        from envs.twx import GAMES

        return GAMES[base][3]
    return env_class(name).max_steps


def why_failed(name: str, trajectory: list[dict], max_steps: int) -> str:
    """The kind of failure of an unsolved episode of env `name`, from its saved trajectory (evaluate.py
    --failures): the env's own reading where it has one (twx-cooking), else the step limit or a loss."""
    if name.split(":")[0] == "twx-cooking":
        from envs.twx import cooking_failure

        return cooking_failure(trajectory, max_steps)
    from envs.base import failure_kind

    return failure_kind(trajectory, max_steps)


def failure_detail(name: str, trajectory: list[dict]) -> str | None:
    """More about an unsolved episode where the env can tell it (report.py --failures counts these
    under its table): for twx-cooking, the appliance confusion of a "wrong appliance" loss as
    "recipe -> agent" (e.g. "fry -> grill"); None elsewhere."""
    if name.split(":")[0] == "twx-cooking":
        from envs.twx import wrong_appliance

        pair = wrong_appliance(trajectory)
        return f"{pair[0]} -> {pair[1]}" if pair else None
    return None


def cook_choices(name: str, trajectory: list[dict]) -> list[tuple[str, str]]:
    """For twx-cooking, (the recipe's verb, the verb of the appliance used) at every cook move of an
    episode, solved or not (envs/twx.py: cook_choices); [] for every other env."""
    if name.split(":")[0] == "twx-cooking":
        from envs.twx import cook_choices as choices

        return choices(trajectory)
    return []


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise EnvError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split

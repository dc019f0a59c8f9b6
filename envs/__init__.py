"""Environments behind one protocol (envs/base.py). `make(name)` is the only entry point scripts use.

Names: twx-cooking (default), twx-coin, twx-mapreader (TextWorldExpress, envs/twx.py), bfcl (BFCL v3
multi-turn function calling, envs/bfcl.py) scienceworld (envs/scienceworld.py) and textcraft
(envs/textcraft.py). Each module's
docstring says what its splits contain.
"""
from envs.base import SPLITS, EnvError, TextEnv  # noqa: F401

ENV_NAMES = ("twx-cooking", "twx-coin", "twx-mapreader", "bfcl", "scienceworld", "textcraft")


def make(name: str) -> TextEnv:
    if name.split(":")[0] == "scienceworld":
        from envs.scienceworld import ScienceWorld

        return ScienceWorld(name)
    if name.split(":")[0] == "bfcl":
        from envs.bfcl import BFCLEnv

        return BFCLEnv(name)
    if name.split(":")[0] == "textcraft":
        from envs.textcraft import TextCraftEnv

        return TextCraftEnv(name)
    if name.split(":")[0] in ENV_NAMES:
        from envs.twx import TWXEnv

        return TWXEnv(name)
    raise EnvError(f"unknown env {name!r}; choose one of: {', '.join(ENV_NAMES)}")


def default_max_steps(name: str) -> int:
    """The env's episode step limit (evaluate.py --max-steps 0), without starting its simulator."""
    base = name.split(":")[0]
    if base in ("twx-cooking", "twx-coin", "twx-mapreader"):
        from envs.twx import GAMES

        return GAMES[base][3]
    if base in ("bfcl", "scienceworld", "textcraft"):
        import importlib

        module = importlib.import_module(f"envs.{base}")
        return next(c.max_steps for c in vars(module).values()
                    if isinstance(c, type) and issubclass(c, TextEnv) and c is not TextEnv and c.__module__ == module.__name__)
    raise EnvError(f"unknown env {name!r}; choose one of: {', '.join(ENV_NAMES)}")


def why_failed(name: str, trajectory: list[dict], max_steps: int) -> str:
    """The kind of failure of an unsolved episode of env `name`, from its saved trajectory (evaluate.py
    --failures): the env's own reading where it has one (twx-cooking), else the step limit or a loss."""
    if name.split(":")[0] == "twx-cooking":
        from envs.twx import cooking_failure

        return cooking_failure(trajectory, max_steps)
    from envs.base import failure_kind

    return failure_kind(trajectory, max_steps)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise EnvError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split

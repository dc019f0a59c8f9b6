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


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise EnvError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split

"""Environments behind one protocol (envs/base.py). `make(name)` is the only entry point scripts use.

Names: twx-cooking (default), twx-coin, twx-mapreader (TextWorldExpress, envs/twx.py), bfcl (BFCL v3
multi-turn function calling, envs/bfcl.py), scienceworld (envs/scienceworld.py) and textcraft
(envs/textcraft.py). Each module's docstring says what its splits contain. Adding an env is one file
(a TextEnv subclass) and one line in CLASSES.
"""
import importlib

from envs.base import SPLITS, EnvError, FailureReading, TextEnv  # noqa: F401

# env name -> (module, class); the twx-* games are one class (envs/twx.py)
CLASSES = {"twx-cooking": ("envs.twx", "TWXEnv"), "twx-coin": ("envs.twx", "TWXEnv"),
           "twx-mapreader": ("envs.twx", "TWXEnv"), "bfcl": ("envs.bfcl", "BFCLEnv"),
           "scienceworld": ("envs.scienceworld", "ScienceWorld"), "textcraft": ("envs.textcraft", "TextCraftEnv")}
ENV_NAMES = tuple(CLASSES)


def env_class(name: str) -> type:
    """The class behind an env name (its module imported, no simulator started)."""
    base = name.split(":")[0]
    if base not in CLASSES:
        raise EnvError(f"unknown env {name!r}; choose one of: {', '.join(ENV_NAMES)}")
    module, cls = CLASSES[base]
    return getattr(importlib.import_module(module), cls)


def make(name: str) -> TextEnv:
    return env_class(name)(name)


def default_max_steps(name: str) -> int:
    """The env's episode step limit (evaluate.py --max-steps 0), without starting its simulator."""
    return env_class(name).step_limit(name)


def failure_reading(name: str) -> FailureReading:
    """How report.py --failures reads env `name`'s saved episodes (envs/base.py: FailureReading)."""
    return env_class(name).failure_reading(name)


def outcome(name: str, action: str, observation: str) -> str | None:
    """What decides the game in the answer to `action` in env `name` (envs/base.py: TextEnv.outcome)."""
    return env_class(name).outcome(name, action, observation)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise EnvError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split

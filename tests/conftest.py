import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import models


@pytest.fixture(scope="session")
def tiny():
    """The tiny random model and tokenizer (fp32: exact comparisons)."""
    import common

    common.set_threads(0)
    return models.load_model("tiny-random", dtype="fp32")


@pytest.fixture(scope="session")
def cooking():
    import envs

    env = envs.make("twx-cooking")
    yield env
    env.close()


def run_script(*args, cwd=ROOT, env=None):
    import subprocess

    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)

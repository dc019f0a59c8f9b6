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


# The four longest tests (each a pipeline of many script processes, minutes), first: with
# `pytest -n 2` (the README's command) the two workers start on two each instead of one worker
# ending the run alone with the last of them.
LONGEST = ("test_run_sh.py::test_smoke_pipeline_end_to_end_and_rerun_skips",
           "test_ablate.py::test_ablation_over_the_fraction_of_expert_data",
           "test_ablate.py::test_ablation_over_k",
           "test_rl.py::test_grpo_raises_training_success_after_an_imitation_warm_up")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.nodeid.split("tests/")[-1]
        return LONGEST.index(name) if name in LONGEST else len(LONGEST)

    items.sort(key=rank)  # stable: every other test keeps its order

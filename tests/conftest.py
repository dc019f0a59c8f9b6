import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

import collect  # noqa: E402  (the project's modules, from ROOT)
import common  # noqa: E402
import envs  # noqa: E402
import models  # noqa: E402
import prompts  # noqa: E402
import train  # noqa: E402

COLLECT_ARGS = ["--env", "twx-cooking", "--tasks", "3", "--k-iwm", "3", "--k-sr", "2", "--model", "tiny-random",
                "--dtype", "fp32", "--chunk", "1"]


@pytest.fixture(scope="session")
def tiny():
    """The tiny random model and tokenizer (fp32: exact comparisons)."""
    common.set_threads(0)
    return models.load_model("tiny-random", dtype="fp32")


@pytest.fixture(scope="session")
def cooking():
    env = envs.make("twx-cooking")
    yield env
    env.close()


def run_script(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.fixture(scope="session")
def collected(tmp_path_factory):
    """A tiny collection on twx-cooking (3 tasks, the tiny random model): collect.py's, iwm.py's and
    reflect.py's tests read it."""
    out = tmp_path_factory.mktemp("collect")
    collect.main(COLLECT_ARGS + ["--out", str(out)])
    return out


def tiny_checkpoint(tmp_path, name, steps, lr="1e-2"):
    """A train.py checkpoint of the tiny model on six one-line games (TMP_PATH/expert.jsonl, written once)."""
    data = tmp_path / "expert.jsonl"
    if not data.exists():
        common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 3}")}
                                  for i in range(6)])
    out = tmp_path / name
    train.main(["--model", "tiny-random", "--dtype", "fp32", "--data", str(data), "--steps", str(steps), "--batch", "3",
                "--lr", lr, "--threads", "1", "--out", str(out)])
    return out

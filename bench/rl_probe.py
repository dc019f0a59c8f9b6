"""GRPO probe on the tiny test model (README, "Reinforcement learning"): does rl.py raise the
sampled success on its own training tasks after a short imitation warm-up?

Collects 8 expert games of twx-coin:numLocations=2, warms the tiny random model up with WARM full
fine-tuning steps (lr 3e-3), measures sampled success (temperature 1.0) on train tasks 0-3 x 16
episodes with a fixed seed, runs rl.py on those 4 tasks (G = 8, UPDATES updates, learning rate LR,
extra rl.py flags after), and measures again with the same seed. Prints one RESULT line.

  python bench/rl_probe.py runs/rl-probe 60 3e-4 10 --full
  python bench/rl_probe.py runs/rl-probe 60 1e-3 10
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import collect  # noqa: E402
import common  # noqa: E402
import envs  # noqa: E402
import rl  # noqa: E402
import train  # noqa: E402

ENV = "twx-coin:numLocations=2"
tmp = Path(sys.argv[1]); warm_steps = int(sys.argv[2]); lr = sys.argv[3]; updates = sys.argv[4]; extra = sys.argv[5:]
data = tmp / "data"
if not (data / "expert.jsonl").exists():
    collect.main(["--env", ENV, "--tasks", "8", "--k-iwm", "0", "--k-sr", "0", "--out", str(data)])
warm = tmp / f"warm{warm_steps}"
if not warm.exists():
    train.main(["--model", "tiny-random", "--full", "--steps", str(warm_steps), "--batch", "16", "--lr", "3e-3",
                "--data", str(data / "expert.jsonl"), "--out", str(warm)])
def sampled_success(model_path, n_tasks=4, reps=16, seed=123):
    m, tok = common.load_model(str(model_path), dtype="fp32"); m.eval()
    with envs.make(ENV) as e: tasks = e.tasks("train")[:n_tasks]
    common.set_seed(seed)
    eps = list(common.run_episodes(m, tok, ENV, tasks * reps, batch=32, max_steps=4, temperature=1.0,
                                   max_new_tokens=24, progress=None))
    return sum(x["success"] for x in eps) / len(eps)
t = time.time()
before = sampled_success(warm)
out = tmp / f"rl-{warm_steps}-{lr}-{updates}-{'_'.join(extra)}"
rl.main(["--init", str(warm), "--env", ENV, "--lr", lr, "--updates", updates, "--tasks-per-update", "4",
         "--group", "8", "--train-tasks", "4", "--batch", "32", "--max-steps", "4", "--eval-every", "0",
         "--out", str(out)] + extra)
after = sampled_success(out / "ckpt")
curve = [c["reward"] for c in common.read_jsonl(out / "curve.jsonl")]
print("RESULT", warm_steps, lr, updates, extra, "before", before, "after", after, "secs", round(time.time() - t), "curve", curve)

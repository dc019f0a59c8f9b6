"""GRPO probe on the tiny test model (README, "Reinforcement learning"): does rl.py raise the
sampled success on its own training tasks after a short imitation warm-up?

Collects 8 expert games of ENV, warms the tiny random model up with WARM full fine-tuning steps
(lr 3e-3, batch 16), measures sampled success (temperature 1.0) on train tasks 0-3 x 16 episodes
with a fixed seed, runs rl.py on those 4 tasks (G = 8, UPDATES updates, learning rate LR, MAX_STEPS
steps per episode, extra rl.py flags after), and measures again with the same seed. Prints one
RESULT line: before, after, seconds and the per-update training reward.

  python bench/rl_probe.py runs/rl-probe twx-coin:numLocations=1 60 0.1 20 2 --full --optim sgd
  python bench/rl_probe.py runs/rl-probe2 twx-coin:numLocations=2 60 3e-4 10 4 --full --optim adam
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
import agent
import models

if len(sys.argv) < 7:
    sys.exit(__doc__)
tmp, ENV, warm_steps, lr, updates, max_steps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
extra = sys.argv[7:]
data = tmp / "data"
if not (data / "expert.jsonl").exists():
    collect.main(["--env", ENV, "--tasks", "8", "--k-iwm", "0", "--k-sr", "0", "--out", str(data)])
warm = tmp / f"warm{warm_steps}"
if not warm.exists():
    train.main(["--model", "tiny-random", "--full", "--steps", str(warm_steps), "--batch", "16", "--lr", "3e-3",
                "--data", str(data / "expert.jsonl"), "--out", str(warm)])


def sampled_success(model_path, n_tasks=4, reps=16, seed=123):
    m, tok = models.load_model(str(model_path), dtype="fp32")
    m.eval()
    with envs.make(ENV) as e:
        tasks = e.tasks("train")[:n_tasks]
    common.set_seed(seed)
    eps = list(agent.run_episodes(m, tok, ENV, tasks * reps, batch=64, max_steps=int(max_steps), temperature=1.0,
                                   max_new_tokens=24, progress=None))
    return sum(x["success"] for x in eps) / len(eps)


t = time.time()
before = sampled_success(warm)
out = tmp / f"rl-{warm_steps}-{lr}-{updates}-{'_'.join(extra)}"
rl.main(["--init", str(warm), "--env", ENV, "--lr", lr, "--updates", updates, "--tasks-per-update", "4",
         "--group", "8", "--train-tasks", "4", "--batch", "32", "--max-steps", max_steps, "--eval-every", "0",
         "--out", str(out)] + extra)
after = sampled_success(out / "ckpt")
curve = [c["reward"] for c in common.read_jsonl(out / "curve.jsonl")]
print("RESULT", ENV, warm_steps, lr, updates, max_steps, extra, "before", before, "after", after,
      "secs", round(time.time() - t), "curve", curve)

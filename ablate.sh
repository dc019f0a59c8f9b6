#!/usr/bin/env bash
# The paper's two ablations (section 6), one command each; each ends in one table and one figure.
#
#   bash ablate.sh k              # alternatives per expert state, K = 1 2 4 8: IWM and SR (IL, the same for all K)
#   bash ablate.sh data           # fraction of the expert data, 1/8 1/4 1/2 1: IL, IWM and SR
#   SMOKE=1 bash ablate.sh k      # the same plumbing on the tiny random model (minutes)
#
# Every other setting is run.sh's (ENV, MODEL, SEEDS, TASKS, EPOCHS, EPISODES, ... pass through), and
# each setting is one run.sh folder, so everything resumes after a crash. The settings share work so
# that they differ only in what is ablated:
#   k     one collection with the largest K of each kind; K's world-model data and reflections use
#         the first K alternatives of each state (iwm.py --k, reflect.py --k). IL and the Prompt
#         baselines do not depend on K: trained and evaluated once, in the first K's folder, and
#         lent to the others by a shared.json file (report.py reads it; no links).
# The shared collection's files are hard links in each setting (regular files in a zip).
#   data  one collection over TASKS tasks; fraction f keeps the first f x TASKS tasks' expert
#         states with their alternatives, and trains every arm on that (same epochs); the Prompt
#         baselines are read once, in the first setting, and lent to the others (shared.json).
# Output: runs/ablate-<k|data>/<setting>/ (run.sh folders), ablation.jsonl and ablation.png.
# Cost on 2 CPU cores at the defaults: each setting is most of a default run (~30-40 min), so
# hours in all: start it in the background (nohup bash ablate.sh k > runs/ablate-k.log 2>&1 &).
set -euo pipefail
cd "$(dirname "$0")"

what=${1:-}
[[ $what == k || $what == data ]] || { echo "usage: bash ablate.sh k|data" >&2; exit 2; }
ENV=${ENV:-twx-cooking}
MODEL=${MODEL:-smollm2-135m}
SEEDS=${SEEDS:-0}
TASKS=${TASKS:-16}                 # run.sh's default: K=2 (ablate.sh k) and fraction 1 (ablate.sh data) are the default run
KS=${KS:-1 2 4 8}                  # the K values (ablate.sh k)
FRACS=${FRACS:-1/8 1/4 1/2 1}      # the fractions of expert data (ablate.sh data)
K_IWM=${K_IWM:-2}                  # ablate.sh data keeps run.sh's K
K_SR=${K_SR:-2}
THREADS=${THREADS:-0}              # torch CPU threads per script (run.sh); 1 when two jobs share 2 cores
ACTION_TOKENS=${ACTION_TOKENS:-}   # as in run.sh: the answer cap of an action (24; bfcl 96)
if [[ -z $ACTION_TOKENS ]]; then ACTION_TOKENS=24; [[ $ENV == bfcl* ]] && ACTION_TOKENS=96; fi
CONCLUDE=${CONCLUDE:-append}       # as in run.sh (reflect.py --conclude)
export ACTION_TOKENS CONCLUDE      # so that every run.sh below uses the same
export FIXED16=1                   # run.sh's 16-game setting (2 epochs at 2e-4), which the ablations measure around
if [[ "${SMOKE:-0}" == 1 ]]; then
  MODEL=tiny-random; TASKS=4; KS=${KS_SMOKE:-1 2}; FRACS=${FRACS_SMOKE:-1/2 1}
fi
A=${ABLATE_DIR:-runs/ablate-$what}
mkdir -p "$A"
kmax=0; for k in $KS; do (( k > kmax )) && kmax=$k; done

# one collection shared by every setting
D=$A/data
if [[ ! -f $D/collect_stats.json ]]; then
  if [[ $what == k ]]; then ki=$kmax; ks=$kmax; else ki=$K_IWM; ks=$K_SR; fi
  python collect.py --env "$ENV" --split train --tasks "$TASKS" --k-iwm "$ki" --k-sr "$ks" --model "$MODEL" \
    --max-new-tokens "$ACTION_TOKENS" --threads "$THREADS" --out "$D"
fi

# run.sh on one setting's folder (what is given here wins over run.sh's SMOKE defaults)
pipeline() { local run=$1 arms=$2; shift 2; env RUN="$run" ENV="$ENV" MODEL="$MODEL" SEEDS="$SEEDS" THREADS="$THREADS" \
  ARMS="$arms" RL=0 MAPPED=0 "$@" bash run.sh; }
# a file of the shared collection in a setting's folder: a hard link (a copy across file systems)
share() { local from=$1 to=$2; [[ -e $to || ! -e $from ]] && return 0; ln "$from" "$to" 2>/dev/null || cp "$from" "$to"; }
# the evaluations of METHODS that setting FIRST holds, lent to setting R (report.py: shared.json)
lend() { local first=$1 R=$2; shift 2; printf '{"run": "../%s", "methods": [%s]}\n' "$(basename "$first")" \
  "$(printf '"%s", ' "$@" | sed 's/, $//')" > "$R/shared.json"; }
# FRACS entry x TASKS, rounded (Python's round), at least 1; and n / TASKS as a decimal
tasks_of_fraction() { awk -v f="$1" -v n="$2" 'BEGIN { split(f, q, "/"); if (!(2 in q)) q[2] = 1
  t = sprintf("%.0f", q[1] * n / q[2]); print (t < 1 ? 1 : t) }'; }  # printf rounds half to even, as Python does
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6g\n", a / b }'; }

if [[ $what == k ]]; then
  first=""
  for k in $KS; do
    R=$A/k$k; mkdir -p "$R"
    for f in expert.jsonl rollouts.jsonl collect_stats.json; do share "$D/$f" "$R/$f"; done
    [[ -f $R/iwm.jsonl ]] || python iwm.py --run "$R" --k "$k"
    [[ -f $R/reflect.jsonl ]] || python reflect.py --run "$R" --model "$MODEL" --k "$k" --conclude "$CONCLUDE" --threads "$THREADS"
    printf '{"ablation": "k", "value": %s, "label": "K=%s"}\n' "$k" "$k" > "$R/setting.json"
    if [[ -n $first ]]; then  # IL and the Prompt baselines: the first K's
      lend "$first" "$R" il prompt prompt-mapped
      pipeline "$R" "iwm sr" K_IWM="$k" K_SR="$k" PROMPT_MODES=" "
    else
      pipeline "$R" "il iwm sr" K_IWM="$k" K_SR="$k"
    fi
    first=${first:-$R}
  done
else
  first=""
  for f in $FRACS; do
    n=$(tasks_of_fraction "$f" "$TASKS")
    R=$A/tasks$n; mkdir -p "$R"
    # the first n tasks' lines of the shared collection
    [[ -f $R/collect_stats.json ]] || python collect.py --env "$ENV" --subset-of "$D" --tasks "$n" --out "$R"
    printf '{"ablation": "data", "value": %s, "label": "%s of %s tasks"}\n' \
      "$(ratio "$n" "$TASKS")" "$n" "$TASKS" > "$R/setting.json"
    if [[ -n $first ]]; then  # the Prompt baselines: the first setting's
      lend "$first" "$R" prompt prompt-mapped
      pipeline "$R" "il iwm sr" K_IWM="$K_IWM" K_SR="$K_SR" PROMPT_MODES=" "
    else
      pipeline "$R" "il iwm sr" K_IWM="$K_IWM" K_SR="$K_SR"
    fi
    first=${first:-$R}
  done
fi

# one table and one figure over the settings (report.py --ablation)
python report.py --ablation "$A"

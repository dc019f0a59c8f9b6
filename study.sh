#!/usr/bin/env bash
# A study over several seeds and sittings on a small machine: run.sh seed by seed, with what such a
# run needs and a single run.sh does not (docs/study.md, "How to run and continue it").
#
#   PRESET=study2 bash study.sh              # every seed in turn; each seed's arms in one dtype
#   PRESET=study2 STREAMS=2 bash study.sh    # two streams of one thread each (2 cores), seeds dealt in turn
#   PRESET=study2 bash study.sh left         # per seed, the arms still to run and the dtype its evaluations ran in
#   JEMALLOC=1 PRESET=study2 bash study.sh   # training and evaluation with jemalloc (less memory, a little slower)
#
# Any run.sh knob passes through (RUN, SEEDS, ARMS, DTYPE, ...). Every run.sh stage resumes, so the
# same command continues a study the next sitting, on this machine or another of the same dtype.
# One dtype per seed: a seed's arms are compared game by game, and bf16 and fp32 decode differently,
# so a seed begun in one is refused in the other (report.py --check-dtype) before anything trains.
set -euo pipefail
cd "$(dirname "$0")"
[[ -n ${PRESET:-}${STUDY:-}${STUDY2:-}${SCARCE:-} ]] || { echo "study.sh: name the study: PRESET=study|study2|scarce" >&2; exit 2; }
STREAMS=${STREAMS:-1}              # 1, or 2: two run.sh processes side by side, THREADS=1 each
JEMALLOC=${JEMALLOC:-0}            # 1: LD_PRELOAD jemalloc (apt install libjemalloc2): 0.57-0.62x the memory, 0.82-0.90x the speed
[[ $STREAMS == 1 || $STREAMS == 2 ]] || { echo "study.sh: STREAMS=$STREAMS: 1 or 2" >&2; exit 2; }

# the study's resolved setting, as run.sh reads the command line and the preset
setting=$(DRY_RUN=1 bash run.sh) || exit 2
knob() { sed -n "s/^$1=//p" <<< "$setting"; }
RUN=$(knob RUN); SEEDS=$(knob SEEDS); ARMS=$(knob ARMS); SPLITS=$(knob SPLITS); DTYPE=$(knob DTYPE); MAPPED=$(knob MAPPED)
echo "$setting"
export PROBE_SEED=$(knob PROBE_SEED)  # the probe reads the study's first seed, not each seed's run

if [[ ${1:-} == left ]]; then
  python report.py --left "$RUN" --seeds $SEEDS --arms $ARMS --splits $SPLITS --mapped "$MAPPED" --dtype "$DTYPE"
  exit 0
elif [[ -n ${1:-} ]]; then
  echo "study.sh: unknown command $1 (only: left)" >&2; exit 2
fi

# glibc's malloc keeps the freed activations of every batch shape, fragmented, so a training process
# grows over a run (6.2-6.8 GB after 20 steps of the study's batches); jemalloc returns them with the
# same losses (bench/allocator.py, docs/benchmarks.md): two streams fit in 24 GB
if [[ $JEMALLOC == 1 ]]; then
  lib=$( (ldconfig -p 2>/dev/null || true) | awk '/libjemalloc\.so\.2 / {print $NF; exit}')
  [[ -n $lib ]] || { echo "study.sh: JEMALLOC=1 but libjemalloc.so.2 is not installed (apt install libjemalloc2)" >&2; exit 2; }
  export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"; echo "allocator: jemalloc ($lib)"
fi

one_seed() { python report.py --check-dtype "$RUN" --seeds "$1" --dtype "$DTYPE" && SEEDS=$1 bash run.sh; }
if [[ $STREAMS == 1 ]]; then
  for seed in $SEEDS; do one_seed "$seed"; done
else
  # stages 1-4 and the Prompt rows once (no arm), then the seeds dealt to two streams of one thread each
  ARMS=" " bash run.sh
  export THREADS=1
  read -ra all <<< "$SEEDS"; a=(); b=()
  for i in "${!all[@]}"; do if (( i % 2 == 0 )); then a+=("${all[i]}"); else b+=("${all[i]}"); fi; done
  ( for seed in "${a[@]}"; do one_seed "$seed"; done ) & first=$!
  status=0; for seed in "${b[@]}"; do one_seed "$seed" || status=$?; done
  wait "$first" || status=$?
  exit "$status"
fi

#!/usr/bin/env bash
# Two jobs on a 2-core machine: one after the other with 2 torch threads each, or side by side with
# 1 thread each? The same two evaluations (a checkpoint's 10 test and 10 ood episodes) both ways, in
# one run; prints the wall times, their ratio, and checks that the results are identical (they are:
# the thread count changes the speed, not a single decision).
#
#   bash bench/threads.sh                               # the default run's IL checkpoint
#   CKPT=runs/compare/ckpt/il-s0 bash bench/threads.sh  # any checkpoint or model name
# Output: results/bench/threads.txt (needs an idle machine: anything else running skews both ways).
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${CKPT:-runs/default/ckpt/il-s0}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
ev() { python evaluate.py --model "$CKPT" --split "$1" --episodes 10 --batch 10 --threads "$2" --out "$T/$3-$1" > "$T/$3-$1.log" 2>&1; }
s=$SECONDS; for sp in test ood; do ev $sp 2 serial; done; serial=$((SECONDS - s))
s=$SECONDS; for sp in test ood; do ev $sp 1 side & done; wait; side=$((SECONDS - s))
same=yes; for sp in test ood; do cmp -s "$T/serial-$sp/$sp.jsonl" "$T/side-$sp/$sp.jsonl" || same=no; done
mkdir -p results/bench
{ echo "$(nproc) cores, $CKPT, 2 x (10 episodes, batch 10)"
  echo "one after the other, 2 threads each: ${serial} s"
  echo "side by side, 1 thread each:         ${side} s"
  python -c "import sys; print(f'work per hour, side by side / serial: {int(sys.argv[1]) / int(sys.argv[2]):.2f}x')" "$serial" "$side"
  echo "identical episodes: $same"; } | tee results/bench/threads.txt

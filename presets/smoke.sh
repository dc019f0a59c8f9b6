# SMOKE=1 (PRESET=smoke): every stage of `bash run.sh` on the tiny random model, three games and three
# episodes: the plumbing end to end in a few minutes (its numbers mean nothing). With another preset
# (SMOKE=1 STUDY=1, SMOKE=1 STUDY2=1), that preset's protocol at the same tiny scale.
: "${MODEL:=tiny-random}" "${RUN:=runs/smoke}" "${TASKS:=3}" "${EPISODES:=3}" "${EVAL_BATCH:=3}" "${MAX_STEPS:=3}"
: "${EPOCHS:=1}" "${SEEDS:=0}" "${RL:=1}" "${RL_UPDATES:=1}" "${RL_GROUP:=2}" "${RL_TASKS:=1}"
: "${SWEEP_EPOCHS:=2}" "${SWEEP_EVERY:=2}" "${DEV_EPISODES:=2}" "${PROBE_TASKS:=2}"
if [[ $PRESET == smoke ]]; then  # alone: GRPO from IL only (the RL stage runs; each arm adds ~15 s)
  : "${RL_ARMS:=il}"
else  # with a study's preset: every arm its preset has, each also read mapped
  : "${MAPPED:=1}"
  [[ " $PRESET " == *" study2 "* || " $PRESET " == *" scarce "* ]] || : "${ARMS:=il il-long iwm iwm-within iwm-mix sr}" "${K_PROP:=1}"
fi

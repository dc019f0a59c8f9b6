# SMOKE=1 (PRESET=smoke): every stage on the tiny random model, three tasks and three episodes a split:
# the plumbing, end to end, in minutes (its numbers mean nothing). With another preset (SMOKE=1
# STUDY2=1), that preset's protocol at the same tiny scale.
: "${MODEL:=tiny-random}" "${RUN:=runs/smoke}" "${TASKS:=3}" "${EPISODES:=3}" "${EVAL_BATCH:=3}" "${MAX_STEPS:=3}"
: "${EPOCHS:=1}" "${SEEDS:=0}" "${MAPPED:=1}" "${RL:=1}" "${RL_UPDATES:=1}" "${RL_GROUP:=2}" "${RL_TASKS:=1}"
: "${SWEEP_EPOCHS:=2}" "${SWEEP_EVERY:=2}" "${DEV_EPISODES:=2}" "${PROBE_TASKS:=2}"
if [[ $PRESET == smoke ]]; then  # alone: two alternatives of each kind, both splits, both Prompt readings
  : "${K_IWM:=2}" "${K_SR:=2}" "${LR:=2e-4}" "${BATCH:=8}" "${SPLITS:=test ood}" "${PROMPT_MODES:=raw mapped}"
fi
# every arm, and the policy's own moves for world modelling, except where a v2 preset sets its own
[[ " $PRESET " == *" study2 "* || " $PRESET " == *" scarce "* ]] || : "${ARMS:=il il-long iwm iwm-within iwm-mix sr}" "${K_PROP:=1}"

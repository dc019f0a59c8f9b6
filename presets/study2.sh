# STUDY2=1 (PRESET=study2): the study, v2 (docs/study.md): a constant-schedule sweep read on 100 dev
# games, whose checkpoint at the budget is IL's seed-0 arm; IL-long continued from IL; world-model data
# with every move that can decide a game (iwm-targeted); all 200 + 200 games per seed; the probe.
: "${RUN:=runs/study2}" "${TASKS:=64}" "${K_IWM:=2}" "${K_SR:=2}" "${K_PROP:=2}" "${CONSEQUENTIAL:=1}"
: "${LR:=2e-4}" "${BATCH:=8}" "${MICRO_BATCH:=4}" "${BUDGET:=sweep}" "${SCHEDULE:=constant}" "${WARMUP_STEPS:=16}"
: "${DEV_EPISODES:=100}" "${SEEDS:=0 1 2}" "${ARMS:=il il-long iwm iwm-targeted}" "${EPISODES:=200}"
: "${EVAL_BATCH:=50}" "${SPLITS:=test ood}" "${PROMPT_MODES:=mapped}" "${PROBE:=1}" "${RL_ARMS:=il iwm}"

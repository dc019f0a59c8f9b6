# STUDY=1 (PRESET=study): the paper's protocol (docs/study.md): 64 games, the imitation budget chosen
# on dev from a cosine sweep, six arms x 3 seeds, 50 + 50 games per seed. Days on 2 cores: run it with
# study.sh (sittings, two streams, one dtype per seed).
: "${RUN:=runs/study}" "${TASKS:=64}" "${K_IWM:=2}" "${K_SR:=2}" "${K_PROP:=2}" "${LR:=2e-4}" "${BATCH:=8}"
: "${MICRO_BATCH:=4}" "${BUDGET:=sweep}" "${SEEDS:=0 1 2}" "${ARMS:=il il-long iwm iwm-within iwm-mix sr}"
: "${EPISODES:=50}" "${EVAL_BATCH:=50}" "${SPLITS:=test ood}" "${PROMPT_MODES:=raw mapped}"

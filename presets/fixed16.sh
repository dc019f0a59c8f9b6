# FIXED16=1 (PRESET=fixed16): the earlier default, which the fixed-budget comparison, the RL run, the
# ablations and the other environments' runs used: 16 games, K = 2 + 2, 2 epochs of LoRA at 2e-4 in
# batches of 8, both splits, the Prompt baseline raw and mapped (docs/results.md, docs/rl.md).
: "${TASKS:=16}" "${K_IWM:=2}" "${K_SR:=2}" "${LR:=2e-4}" "${EPOCHS:=2}" "${BATCH:=8}" "${SPLITS:=test ood}"
: "${PROMPT_MODES:=raw mapped}"

# SCARCE=1 (PRESET=scarce): scarce expert data (docs/study.md): 16 games, K = 8 uniform alternatives per
# state, no policy alternatives, a sweep of 12 epochs; otherwise v2's protocol (study2.sh).
: "${RUN:=runs/scarce}" "${TASKS:=16}" "${K_IWM:=8}" "${K_SR:=0}" "${K_PROP:=0}" "${SWEEP_EPOCHS:=12}"
source presets/study2.sh

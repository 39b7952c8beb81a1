#!/usr/bin/env bash
# One device call of the full-size runs (docs/benchmarks.md): a GPU check of the loading
# paths on a tiny checkpoint first (fails fast), then make-full and labelled sessions.
#   RUNS="p-auto:auto:160:2:0" bash bench/h200_e2e_call.sh
# RUNS: space-separated LABEL:BUDGET:FRAMES:STEPS:HOLD_GIB[:SIZE_ARGS with , for spaces].
# Everything goes to /tmp/e2e_out; the call's $OUT gets one tarball of it.
set -u
FINAL=${OUT:-/tmp/final}
export OUT=/tmp/e2e_out
mkdir -p "$OUT" "$FINAL"
pack() { tar czf "$FINAL/e2e-$(date +%H%M%S).tgz" -C /tmp e2e_out; }
trap pack EXIT
T0=$SECONDS
LIMIT=${LIMIT:-570}
export PYTHONPATH=/tmp/site:$PWD
[ -d /tmp/site/diffsynth ] || bash bench/e2e.sh install || exit 1
if [ "${CHECK:-1}" = 1 ] && [ ! -f /tmp/gpu_load_check.ok ]; then
  python3 -m engine.cli ckpt make-tiny /tmp/tiny >/dev/null 2>&1
  python3 bench/gpu_load_check.py --ckpt /tmp/tiny >"$OUT/gpu_load_check.json" 2>"$OUT/gpu_load_check.err" \
    || { echo "gpu_load_check failed"; cat "$OUT/gpu_load_check.json"; tail -30 "$OUT/gpu_load_check.err"; exit 1; }
  touch /tmp/gpu_load_check.ok
  echo "gpu_load_check ok in $((SECONDS - T0)) s"
fi
bash bench/e2e.sh setup || exit 1  # make-full skips the files already complete
for run in ${RUNS:-}; do
  IFS=: read -r label budget frames steps hold size <<<"$run"
  left=$(( LIMIT - (SECONDS - T0) ))
  [ "$left" -gt 30 ] || { echo "no time left for $label"; break; }
  # Finished sessions' anchor caches go: with the 46 GB checkpoint a second cache
  # overflows the machine's 64 GB disk.
  for c in /tmp/e2e/home/sessions/*/cache; do
    [ -d "$c" ] && [ -f "$(dirname "$c")/video.mp4" ] && rm -rf "$c"
  done
  if [ -f "/tmp/e2e/$label.session" ]; then  # started in an earlier call: keep watching
    LABEL=$label bash bench/e2e.sh poll "$left"
  else
    LABEL=$label BUDGET=$budget FRAMES=$frames STEPS=$steps HOLD_GIB=$hold \
      SIZE_ARGS="${size//,/ }" bash bench/e2e.sh run "$left"
  fi
done
if [ "${MERGE_BENCH:-0}" = 1 ] && [ $(( LIMIT - (SECONDS - T0) )) -gt 40 ]; then
  python3 bench/merge_on_device.py --ckpt /tmp/e2e/ckpt >"$OUT/merge_on_device.json" 2>&1
  cat "$OUT/merge_on_device.json"
fi

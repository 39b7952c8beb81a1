#!/usr/bin/env bash
# DiT step benchmark at the release's real shapes (bench/dit_step.py) on the device machine.
#
#   bash bench/dit_step.sh [dit_step.py options]     # writes $OUT/dit_step.json, logs, tables
#   bash bench/dit_step.sh --compile --time-limit 560   # + compiled DiT blocks (issue #16)
#
# Installs the carried wheels (.whl/*.whl: diffsynth and the modules it imports) into
# /tmp/site without an index, then runs the benchmark. SKIP_INSTALL=1 skips the install.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/dit_step_out}
mkdir -p "$OUT"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  bash bench/wheels.sh install "$OUT/pip.log" || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
{ nvidia-smi || echo "nvidia-smi not available"; } >"$OUT/nvidia-smi.txt" 2>&1
free -g >"$OUT/free.txt" 2>&1
df -h /tmp >"$OUT/df.txt" 2>&1
python3 bench/dit_step.py --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"

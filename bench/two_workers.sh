#!/usr/bin/env bash
# One session with one worker, then with several (bench/two_workers.py), on the tiny
# random-weight checkpoint, on the device machine. GPUS_B=0,1 on a two-GPU machine
# (issue #8); GPUS_B=0,0 puts two workers on one GPU (the code path, not a speed-up).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/two_workers_out}
GPUS_A=${GPUS_A:-0}
GPUS_B=${GPUS_B:-0,1}
WORK=${WORK:-/tmp/two_workers}
mkdir -p "$OUT" && rm -rf "$WORK" && mkdir -p "$WORK"
bash bench/wheels.sh install "$OUT/pip.log" || exit 1  # the store's wheels are in .whl/ now
export PYTHONPATH=/tmp/site:$PWD
python3 -m engine.cli ckpt make-tiny "$WORK/tiny" >"$OUT/setup.log" 2>&1 || { tail "$OUT/setup.log"; exit 1; }
python3 -m engine.cli sample-inputs "$WORK/inp" --frames 300 --height 256 --width 128 >>"$OUT/setup.log" 2>&1 || { tail "$OUT/setup.log"; exit 1; }
python3 bench/two_workers.py --ckpt "$WORK/tiny" --inputs "$WORK/inp" --gpus-a "$GPUS_A" \
  --gpus-b "$GPUS_B" --home "$WORK/home" --out "$OUT" -- --height 128 --width 64 \
  --steps 10 -s 0 2 -b 2 4 2>&1 | tee "$OUT/log.txt"
status=${PIPESTATUS[0]}
cp "$WORK"/home/logs/*.log "$OUT/" 2>/dev/null
exit "$status"

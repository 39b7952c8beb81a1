#!/usr/bin/env bash
# Install posegen-tui (CPU torch pins) and run, in this terminal, a whole generation on the tiny
# random-weight checkpoint with synthetic inputs: anchor -> base -> cond -> merge.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -c constraints-cpu.txt -e .
DEMO=${POSEGEN_DEMO_DIR:-demo}
[ -f "$DEMO/ckpt/README-TINY.txt" ] || posegen ckpt make-tiny "$DEMO/ckpt"
[ -f "$DEMO/inputs/prompt.txt" ] || posegen sample-inputs "$DEMO/inputs" --height 256 --width 128
echo "NOTE: the tiny checkpoint has RANDOM weights: the video shows noise shaped by the pipeline."
posegen generate --ckpt "$DEMO/ckpt" --image "$DEMO/inputs/reference.png" \
  --pose "$DEMO/inputs/pose.mp4" --hand "$DEMO/inputs/hand.mp4" \
  --prompt-file "$DEMO/inputs/prompt.txt" --out "$DEMO/run" \
  --height 128 --width 64 -s 0 2 -b 2 4 --steps 10 "$@"

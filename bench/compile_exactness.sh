#!/usr/bin/env bash
# Compiled DiT blocks on CUDA, tiny checkpoint (issue #16): frames against eager, two
# compiled runs, and a compiled run killed with kill -9 and resumed.
#
#   bash bench/compile_exactness.sh      # on the device machine; writes $OUT/compile_exactness.json
#
# Installs the carried wheels (.whl/*.whl) like bench/dit_step.sh. Every run is the real
# `posegen generate` command; frames are compared chunk by chunk (frames.npy, uint8).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/compile_exactness_out}
W=${WORK:-/tmp/compile_exactness}
mkdir -p "$OUT"
rm -rf "$W" && mkdir -p "$W"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  bash bench/wheels.sh install "$OUT/pip.log" || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export POSEGEN_HOME=$W/home POSEGEN_COMPILE_CACHE=$W/compile-cache
pg() { python3 -m sessions.cli "$@"; }
pg ckpt make-tiny "$W/ckpt" >/dev/null || exit 1
pg sample-inputs "$W/in" --frames 120 --height 256 --width 128 >/dev/null || exit 1
gen() {  # gen OUTDIR COMPILE
  pg generate --image "$W/in/reference.png" --pose "$W/in/pose.mp4" --hand "$W/in/hand.mp4" \
    --prompt-file "$W/in/prompt.txt" --out "$1" --ckpt "$W/ckpt" --device "${DEVICE:-cuda}" \
    --height 256 --width 128 --frames 33 --head 9 --tail 8 --steps 8 -s 0 2 -b 2 4 \
    --compile "$2"
}
t0=$SECONDS; gen "$W/eager" off >"$OUT/eager.log" 2>&1 || { tail "$OUT/eager.log"; exit 1; }
echo "eager run: $((SECONDS - t0)) s"
t0=$SECONDS; gen "$W/c1" on >"$OUT/c1.log" 2>&1 || { tail "$OUT/c1.log"; exit 1; }
echo "compiled run 1: $((SECONDS - t0)) s"
t0=$SECONDS; gen "$W/c2" on >"$OUT/c2.log" 2>&1 || { tail "$OUT/c2.log"; exit 1; }
echo "compiled run 2 (warm cache): $((SECONDS - t0)) s"
# kill -9 in the middle of the anchor's steps (its first saved step state, written once
# that step's cache files are on disk), then the same command again.
gen "$W/k" on >"$OUT/k1.log" 2>&1 &
pid=$!
for _ in $(seq 3000); do [ -f "$W/k/chunks/000/state.safetensors" ] && break; sleep 0.02; done
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
echo "killed mid anchor; on disk: $(ls "$W/k/chunks" | tr '\n' ' ')"
python3 - "$W/k/chunks/000/state.safetensors" >"$OUT/killed_at.json" <<'EOF2'
import json, sys
from safetensors import safe_open
try:
    with safe_open(sys.argv[1], framework="pt") as f:
        print(json.dumps({"anchor_next_step": int(f.metadata()["next_step"])}))
except Exception as e:  # noqa: BLE001 - reported, not fatal
    print(json.dumps({"anchor_state": f"unreadable: {e}"}))
EOF2
cat "$OUT/killed_at.json"
t0=$SECONDS; gen "$W/k" on >"$OUT/k2.log" 2>&1 || { tail "$OUT/k2.log"; exit 1; }
echo "resumed run: $((SECONDS - t0)) s"
python3 - "$W" "$OUT/compile_exactness.json" <<'EOF'
import hashlib, json, sys
from pathlib import Path
import numpy as np
w, out = Path(sys.argv[1]), sys.argv[2]
def frames(run):
    return [np.load(p) for p in sorted((w / run / "chunks").glob("*/frames.npy"))]
def md5(run):
    return hashlib.md5((w / run / "video.mp4").read_bytes()).hexdigest()
e, c1, c2, k = (frames(r) for r in ("eager", "c1", "c2", "k"))
diff = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(e, c1, strict=True)]
result = {
    "chunks": len(e),
    "eager_vs_compiled_max_uint8": int(max(d.max() for d in diff)),
    "eager_vs_compiled_mean_uint8": float(np.mean([d.mean() for d in diff])),
    "eager_vs_compiled_values_differing": float(np.mean([(d > 0).mean() for d in diff])),
    "compiled_runs_identical": all(np.array_equal(a, b) for a, b in zip(c1, c2, strict=True)),
    "killed_and_resumed_identical": all(np.array_equal(a, b) for a, b in zip(c1, k, strict=True)),
    "video_md5": {r: md5(r) for r in ("eager", "c1", "c2", "k")},
    "killed_at": json.loads((Path(out).parent / "killed_at.json").read_text()),
    "compiled_done_json": json.loads((w / "c1/chunks/001/done.json").read_text())["extra"].get(
        "compiled"),
}
json.dump(result, open(out, "w"), indent=1)
print(json.dumps(result, indent=1))
EOF

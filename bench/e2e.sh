#!/usr/bin/env bash
# Full size, end to end (issue #13): a real session through the CLI at 1280x720 on a
# random-weight checkpoint in the release's layout, every phase timed.
#
#   bash bench/e2e.sh setup      # wheels -> /tmp/site, make-full, inputs, project + session
#   bash bench/e2e.sh start      # posegen start (detached workers: they outlive the call)
#   bash bench/e2e.sh poll SECS  # watch until the session ends or SECS pass; writes $OUT/*
#   bash bench/e2e.sh all SECS   # setup + start + poll, for a machine kept across calls
#
# On a CPU, to try the script: SKIP_INSTALL=1 DEVICE=cpu CKPT_ARGS='--scale tiny'
#   SIZE_ARGS='--height 64 --width 32 --frames 17 --head 5 --tail 4 -b 0 2' FRAMES=30
#
# Settings: BUDGET (-p, default auto), STEPS (default 2), FRAMES (driving frames, default
# 160: K = 3 chunks = an anchor, a base and a cond chunk), HOLD_GIB (GiB of the card taken
# by another process first, default 0). The machine keeps /tmp between warm calls, so a
# session started in one call can be polled in the next.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/e2e_out}
WORK=${WORK:-/tmp/e2e}
BUDGET=${BUDGET:-auto}
STEPS=${STEPS:-2}
FRAMES=${FRAMES:-160}
HOLD_GIB=${HOLD_GIB:-0}
DEVICE=${DEVICE:-cuda}
CKPT_ARGS=${CKPT_ARGS:-}      # e.g. "--scale tiny" to try the script on a CPU
SIZE_ARGS=${SIZE_ARGS:-}      # e.g. "--height 64 --width 32 --frames 17 --head 5 --tail 4 -b 0 2"
export POSEGEN_HOME=$WORK/home
export PYTHONPATH=/tmp/site:$PWD
mkdir -p "$OUT" "$WORK"
posegen() { python3 -m sessions.cli "$@"; }
now() { date +%s.%N; }
stamp() { echo "$(date +%T) $*" | tee -a "$OUT/e2e-log.txt"; }

setup() {
  local t0 t1
  stamp "install wheels"
  [ "${SKIP_INSTALL:-0}" = 1 ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1 || { tail -20 "$OUT/pip.log"; exit 1; }
  { nvidia-smi; free -g; df -h /tmp; nproc; } >"$OUT/machine.txt" 2>&1
  t0=$(now)
  stamp "make-full $WORK/ckpt"
  # shellcheck disable=SC2086
  python3 -m engine.cli ckpt make-full "$WORK/ckpt" $CKPT_ARGS \
    >"$OUT/make-full.txt" 2>"$OUT/make-full.err" || { tail -30 "$OUT/make-full.err"; exit 1; }
  t1=$(now)
  stamp "make-full done in $(python3 -c "print(round($t1 - $t0, 1))") s"
  python3 -m engine.cli sample-inputs "$WORK/inp" --frames "$FRAMES" --height 640 --width 360 \
    >"$OUT/inputs.txt" 2>&1 || { cat "$OUT/inputs.txt"; exit 1; }
  posegen init e2e --image "$WORK/inp/reference.png" --pose "$WORK/inp/pose.mp4" \
    --hand "$WORK/inp/hand.mp4" --prompt-file "$WORK/inp/prompt.txt" --framing half-body \
    >>"$OUT/e2e-log.txt" 2>&1 || exit 1
  # shellcheck disable=SC2086
  posegen session new e2e --ckpt "$WORK/ckpt" --device "$DEVICE" -p "$BUDGET" --steps "$STEPS" \
    $SIZE_ARGS --json >"$OUT/session.json" 2>>"$OUT/e2e-log.txt" || { cat "$OUT/e2e-log.txt"; exit 1; }
  stamp "session: $(cat "$OUT/session.json")"
}

start() {
  if [ "$HOLD_GIB" != 0 ]; then  # another process holding part of the card, for -p auto
    setsid python3 -c "import torch, time; x = torch.empty(int($HOLD_GIB * 2**30), \
dtype=torch.uint8, device='cuda'); time.sleep(3600)" >/dev/null 2>&1 < /dev/null &
    sleep 8
  fi
  date +%s.%N >"$WORK/start_time"
  stamp "posegen start 1 (-p $BUDGET, $STEPS steps)"
  posegen start 1 >>"$OUT/e2e-log.txt" 2>&1 || exit 1
}

# Watch the session: worker RSS peak (VmHWM) and the card's memory, once a second.
poll() {
  local limit=$1 t_end state
  t_end=$(( $(date +%s) + limit ))
  touch "$WORK/rss_peak_kib" "$WORK/vram_peak_mib"
  while [ "$(date +%s)" -lt "$t_end" ]; do
    for pid in $(pgrep -f "sessions.worker" || true); do
      hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      old=$(cat "$WORK/rss_peak_kib" 2>/dev/null || echo 0)
      [ "${hwm:-0}" -gt "${old:-0}" ] 2>/dev/null && echo "$hwm" >"$WORK/rss_peak_kib"
    done
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null \
      | head -1)
    old=$(cat "$WORK/vram_peak_mib" 2>/dev/null || echo 0)
    [ "${used:-0}" -gt "${old:-0}" ] 2>/dev/null && echo "$used" >"$WORK/vram_peak_mib"
    state=$(python3 - <<'EOF'
import sqlite3, os
db = sqlite3.connect(os.path.join(os.environ["POSEGEN_HOME"], "posegen.db"))
print(db.execute("SELECT state FROM sessions WHERE id = 1").fetchone()[0])
EOF
)
    case "$state" in done|failed|stopped|DONE|FAILED|STOPPED) break ;; esac
    sleep 1
  done
  report
}

report() {
  posegen status 1 >"$OUT/status.txt" 2>&1
  posegen logs 1 >"$OUT/logs.txt" 2>&1
  cp "$POSEGEN_HOME"/logs/session-0001-worker-*.log "$OUT/" 2>/dev/null
  python3 - "$WORK" "$OUT" <<'EOF'
import glob, json, os, sqlite3, sys
work, out = sys.argv[1], sys.argv[2]
home = os.environ["POSEGEN_HOME"]
db = sqlite3.connect(os.path.join(home, "posegen.db"))
db.row_factory = sqlite3.Row
start = float(open(os.path.join(work, "start_time")).read())
events = [dict(r) for r in db.execute("SELECT * FROM events WHERE session_id = 1 ORDER BY id")]
chunks = {}
for path in sorted(glob.glob(os.path.join(home, "sessions", "0001", "chunks", "*", "done.json"))):
    chunks[os.path.basename(os.path.dirname(path))] = json.load(open(path))
def read(name):
    try:
        return float(open(os.path.join(work, name)).read().strip() or 0)
    except OSError:
        return None
summary = {"start_time": start, "events": events, "chunks": chunks,
           "worker_rss_peak_gib": (read("rss_peak_kib") or 0) / 2**20,
           "vram_used_peak_gib_nvidia_smi": (read("vram_peak_mib") or 0) / 1024,
           "state": db.execute("SELECT state FROM sessions WHERE id = 1").fetchone()[0]}
json.dump(summary, open(os.path.join(out, "e2e.json"), "w"), indent=1, default=str)
print(f"state {summary['state']}; worker RSS peak {summary['worker_rss_peak_gib']:.1f} GiB; "
      f"card used peak {summary['vram_used_peak_gib_nvidia_smi']:.1f} GiB")
for e in events:
    print(f"{e['t'] - start:8.1f} s  {e['kind']:<12} {e['message'][:100]}" if isinstance(
        e.get("t"), (int, float)) else f"{e['kind']:<12} {e['message'][:100]}")
for name, d in chunks.items():
    x = d.get("extra", {})
    print(f"chunk {name} {d['role']}: {d['seconds']:.1f} s, {d['steps_run']} steps, "
          f"{d['seconds_per_step'] or 0:.2f} s/step, peak {(d['peak_vram_bytes'] or 0) / 2**30:.1f} GiB, "
          f"phases {json.dumps({k: round(v, 1) for k, v in x.get('phases', {}).items()})}")
    print(f"   loading {json.dumps({k: round(v, 1) for k, v in x.get('model_loading', {}).items()})}")
EOF
}

case "${1:-}" in
  setup) setup ;;
  start) start ;;
  poll) poll "${2:-540}" ;;
  report) report ;;
  all) setup && start && poll "${2:-400}" ;;
  *) echo "usage: bash bench/e2e.sh setup|start|poll SECS|report|all SECS" >&2; exit 2 ;;
esac

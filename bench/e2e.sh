#!/usr/bin/env bash
# Full size, end to end (issue #13): real sessions through the CLI at 1280x720 on a
# random-weight checkpoint in the release's layout, every phase timed.
#
#   bash bench/e2e.sh install    # wheels -> /tmp/site, machine facts
#   bash bench/e2e.sh setup      # install (once) + make-full (resumes where it stopped)
#   bash bench/e2e.sh run SECS   # one labelled session: project + session new + start + poll
#   bash bench/e2e.sh poll SECS  # keep watching the labelled session (detached workers
#                                # outlive a call; the machine keeps /tmp while warm)
#   bash bench/e2e.sh all SECS   # setup + run
#
# Settings (environment): LABEL (names the project and $OUT/LABEL/, default p-BUDGET),
# BUDGET (-p, default auto), STEPS (default 2), FRAMES (driving frames, default 160: K = 3
# chunks = an anchor, a base and a cond chunk; 81 gives the anchor alone), HOLD_GIB (GiB of
# the card another process holds during the session, default 0), SIZE_ARGS (extra
# `session new` flags), CKPT_ARGS (make-full flags).
#
# On a CPU, to try the script: SKIP_INSTALL=1 DEVICE=cpu CKPT_ARGS='--scale tiny'
#   SIZE_ARGS='--height 64 --width 32 --frames 17 --head 5 --tail 4 -b 0 2' FRAMES=30
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/e2e_out}
WORK=${WORK:-/tmp/e2e}
BUDGET=${BUDGET:-auto}
STEPS=${STEPS:-2}
FRAMES=${FRAMES:-160}
HOLD_GIB=${HOLD_GIB:-0}
DEVICE=${DEVICE:-cuda}
LABEL=${LABEL:-p-$BUDGET}
CKPT_ARGS=${CKPT_ARGS:-}
SIZE_ARGS=${SIZE_ARGS:-}
export POSEGEN_HOME=$WORK/home
export PYTHONPATH=/tmp/site:$PWD
RUN_OUT=$OUT/$LABEL
mkdir -p "$OUT" "$WORK" "$RUN_OUT"
posegen() { python3 -m sessions.cli "$@"; }
now() { date +%s.%N; }
stamp() { echo "$(date +%T) [$LABEL] $*" | tee -a "$OUT/e2e-log.txt"; }

install() {
  stamp "install wheels"
  [ "${SKIP_INSTALL:-0}" = 1 ] || bash bench/wheels.sh install "$OUT/pip.log" || exit 1
  { nvidia-smi; free -g; df -h /tmp; nproc; } >"$OUT/machine.txt" 2>&1
}

setup() {
  local t0 t1
  [ -d /tmp/site/diffsynth ] || [ "${SKIP_INSTALL:-0}" = 1 ] || install
  t0=$(now)
  stamp "make-full $WORK/ckpt"
  # shellcheck disable=SC2086
  python3 -m engine.cli ckpt make-full "$WORK/ckpt" $CKPT_ARGS \
    >"$OUT/make-full.txt" 2>"$OUT/make-full.err" || { tail -30 "$OUT/make-full.err"; exit 1; }
  t1=$(now)
  stamp "make-full done in $(python3 -c "print(round($t1 - $t0, 1))") s"
}

session() {
  local inp=$WORK/inp-$FRAMES
  [ -f "$inp/prompt.txt" ] || python3 -m engine.cli sample-inputs "$inp" --frames "$FRAMES" \
    --height 640 --width 360 >"$RUN_OUT/inputs.txt" 2>&1 || { cat "$RUN_OUT/inputs.txt"; exit 1; }
  posegen init "e2e-$LABEL" --image "$inp/reference.png" --pose "$inp/pose.mp4" \
    --hand "$inp/hand.mp4" --prompt-file "$inp/prompt.txt" --framing half-body \
    >>"$OUT/e2e-log.txt" 2>&1 || exit 1
  # shellcheck disable=SC2086
  posegen session new "e2e-$LABEL" --ckpt "$WORK/ckpt" --device "$DEVICE" -p "$BUDGET" \
    --steps "$STEPS" $SIZE_ARGS --json >"$RUN_OUT/session.json" 2>>"$OUT/e2e-log.txt" \
    || { tail "$OUT/e2e-log.txt"; exit 1; }
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" \
    "$RUN_OUT/session.json" >"$WORK/$LABEL.session"
  stamp "session $(cat "$WORK/$LABEL.session"): $(cat "$RUN_OUT/session.json")"
}

start() {
  if [ "$HOLD_GIB" != 0 ]; then  # another process holding part of the card
    setsid python3 -c "import torch, time; x = torch.empty(int($HOLD_GIB * 2**30), \
dtype=torch.uint8, device='cuda'); x.fill_(1); print('held', flush=True); time.sleep(3600)" \
      >"$WORK/hold.out" 2>&1 < /dev/null &
    echo $! >"$WORK/hold.pid"
    while ! grep -q held "$WORK/hold.out" 2>/dev/null; do sleep 0.5; done
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv >"$RUN_OUT/held.txt"
  fi
  date +%s.%N >"$WORK/$LABEL.start_time"
  stamp "posegen start $(cat "$WORK/$LABEL.session") (-p $BUDGET, $STEPS steps, hold $HOLD_GIB GiB)"
  posegen start "$(cat "$WORK/$LABEL.session")" >>"$OUT/e2e-log.txt" 2>&1 || exit 1
}

# Watch the session: worker RSS peak (VmHWM) and the card's memory, twice a second.
poll() {
  local limit=$1 t_end state sid
  sid=$(cat "$WORK/$LABEL.session")
  t_end=$(( $(date +%s) + limit ))
  touch "$WORK/$LABEL.rss_kib" "$WORK/$LABEL.vram_mib"
  while [ "$(date +%s)" -lt "$t_end" ]; do
    for pid in $(pgrep -f "sessions.worker" || true); do
      hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      old=$(cat "$WORK/$LABEL.rss_kib" 2>/dev/null || echo 0)
      [ "${hwm:-0}" -gt "${old:-0}" ] 2>/dev/null && echo "$hwm" >"$WORK/$LABEL.rss_kib"
    done
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null \
      | head -1)
    old=$(cat "$WORK/$LABEL.vram_mib" 2>/dev/null || echo 0)
    [ "${used:-0}" -gt "${old:-0}" ] 2>/dev/null && echo "$used" >"$WORK/$LABEL.vram_mib"
    state=$(python3 -c "import sqlite3, os, sys
db = sqlite3.connect(os.path.join(os.environ['POSEGEN_HOME'], 'posegen.db'))
print(db.execute('SELECT state FROM sessions WHERE id = ?', (int(sys.argv[1]),)).fetchone()[0])" "$sid")
    case "$state" in done|failed|stopped|DONE|FAILED|STOPPED) break ;; esac
    sleep 0.5
  done
  [ -f "$WORK/hold.pid" ] && { kill "$(cat "$WORK/hold.pid")" 2>/dev/null; rm -f "$WORK/hold.pid"; }
  report
}

report() {
  local sid
  sid=$(cat "$WORK/$LABEL.session")
  posegen status "$sid" >"$RUN_OUT/status.txt" 2>&1
  posegen logs "$sid" >"$RUN_OUT/logs.txt" 2>&1
  cp "$POSEGEN_HOME"/logs/session-"$(printf %04d "$sid")"-worker-*.log "$RUN_OUT/" 2>/dev/null
  python3 - "$WORK" "$RUN_OUT" "$LABEL" "$sid" <<'EOF'
import glob, json, os, sqlite3, sys
work, out, label, sid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
home = os.environ["POSEGEN_HOME"]
db = sqlite3.connect(os.path.join(home, "posegen.db"))
db.row_factory = sqlite3.Row
start = float(open(os.path.join(work, f"{label}.start_time")).read())
events = [dict(r) for r in db.execute(
    "SELECT * FROM events WHERE session_id = ? ORDER BY id", (sid,))]
chunks = {}
for path in sorted(glob.glob(os.path.join(home, "sessions", f"{sid:04d}", "chunks", "*",
                                          "done.json"))):
    chunks[os.path.basename(os.path.dirname(path))] = json.load(open(path))
def read(name):
    try:
        return float(open(os.path.join(work, f"{label}.{name}")).read().strip() or 0)
    except OSError:
        return None
first_sampling = next((e["t"] - start for e in events if e["kind"] == "phase"
                       and e["message"].endswith(": sampling")), None)
summary = {"label": label, "start_time": start, "events": events, "chunks": chunks,
           "first_sampling_s": first_sampling,
           "worker_rss_peak_gib": (read("rss_kib") or 0) / 2**20,
           "vram_used_peak_gib_nvidia_smi": (read("vram_mib") or 0) / 1024,
           "state": db.execute("SELECT state FROM sessions WHERE id = ?",
                               (sid,)).fetchone()[0]}
json.dump(summary, open(os.path.join(out, "e2e.json"), "w"), indent=1, default=str)
print(f"[{label}] state {summary['state']}; start -> first sampling step "
      f"{first_sampling if first_sampling is None else round(first_sampling, 1)} s; "
      f"worker RSS peak {summary['worker_rss_peak_gib']:.1f} GiB; "
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
  install) install ;;
  setup) setup ;;
  session) session ;;
  start) start ;;
  poll) poll "${2:-540}" ;;
  report) report ;;
  run) session && start && poll "${2:-400}" ;;
  all) setup && session && start && poll "${2:-400}" ;;
  *) echo "usage: bash bench/e2e.sh setup|run SECS|poll SECS|report|all SECS" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# GPU smoke test of the engine with the tiny random-weight checkpoint.
#
# Run from the repository root on a CUDA machine (the device machine: carry .whl/).
#   - installs the carried wheels (.whl/*.whl) into /tmp/site, no index, no deps;
#   - makes a tiny checkpoint and 300-frame sample inputs;
#   - generates the same job with -p none, 0 and 1e6 (all resident / all streamed /
#     partly streamed), timing each, and compares the chunk frames between them;
#   - kills a generate with SIGKILL after chunk 0 (mid-chunk where possible), resumes it,
#     and compares with the uninterrupted run;
#   - optionally repeats the `none` run to tell GPU run-to-run nondeterminism apart;
#   - prints a table last and writes raw numbers to $OUT/gpu_smoke.json.
#
# Env overrides (for a dry run elsewhere): DEVICE (cuda), FRAMES (300), STEPS (10),
# HEIGHT (128), WIDTH (64), WORK (/tmp/gpu_smoke), SKIP_INSTALL=1, REPEAT=0 to skip the
# repeat, TIME_LIMIT (seconds after which optional parts are skipped, 420).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_smoke_out}
DEVICE=${DEVICE:-cuda}
FRAMES=${FRAMES:-300}
STEPS=${STEPS:-10}
HEIGHT=${HEIGHT:-128}
WIDTH=${WIDTH:-64}
WORK=${WORK:-/tmp/gpu_smoke}
REPEAT=${REPEAT:-1}
TIME_LIMIT=${TIME_LIMIT:-420}
T0=$(date +%s.%N)
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
LOG="$OUT/logs.txt"
: >"$LOG"

elapsed() { python3 -c "import time; print(f'{time.time() - $T0:.1f}')"; }
say() { echo "[gpu_smoke +$(elapsed)s] $*" | tee -a "$LOG"; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  say "installing carried wheels: $(ls .whl/*.whl | xargs -n1 basename | tr '\n' ' ')"
  bash bench/wheels.sh install "$OUT/pip.log" || { say "pip install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

{ nvidia-smi || echo "nvidia-smi not available"; } >"$OUT/nvidia-smi.txt" 2>&1
python3 - >"$WORK/env.json" 2>>"$LOG" <<'EOF'
import json, platform, torch
from engine.compat import ensure_torchvision_importable
try:
    ensure_torchvision_importable()  # CPU torch + CUDA torchvision needs the shim
except Exception:  # noqa: BLE001 - the loop below reports the import failure
    pass
info = {"python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device_name=p.name, device_memory_gib=round(p.total_memory / 2**30, 1),
                sm_count=p.multi_processor_count)
from importlib import import_module
from importlib.metadata import version
for dist, mod in (("torchvision", "torchvision"), ("transformers", "transformers"),
                  ("diffsynth", "diffsynth"), ("modelscope", "modelscope"),
                  ("imageio", "imageio"), ("imageio-ffmpeg", "imageio_ffmpeg"),
                  ("opencv-python-headless", "cv2"), ("numpy", "numpy")):
    try:
        import_module(mod)
        info[dist] = version(dist)
    except Exception as e:  # noqa: BLE001 - reported, not fatal here
        info[dist] = f"IMPORT FAILED: {type(e).__name__}: {e}"
try:
    import pynvml
    pynvml.nvmlInit()
    info["driver"] = pynvml.nvmlSystemGetDriverVersion()
except Exception as e:  # noqa: BLE001
    info["driver"] = f"?: {e}"
print(json.dumps(info))
EOF
say "env: $(cat "$WORK/env.json")"

ts() { date +%s.%N; }
# run_timed NAME CMD...: runs CMD, appends its output to the log, records rc and seconds.
run_timed() {
  local name=$1; shift
  local t1 t2 rc
  echo "===== $name: $*" >>"$LOG"
  t1=$(ts)
  "$@" >>"$LOG" 2>&1
  rc=$?
  t2=$(ts)
  python3 -c "print(f'{$t2 - $t1:.2f}')" >"$WORK/$name.seconds"
  echo "$rc" >"$WORK/$name.rc"
  say "$name: rc=$rc in $(cat "$WORK/$name.seconds") s"
  [ "$rc" = 0 ] || { echo "----- tail of $name"; tail -40 "$LOG"; }
  return "$rc"
}

run_timed make_tiny python3 -m engine.cli ckpt make-tiny "$WORK/tiny" || exit 1
run_timed sample_inputs python3 -m engine.cli sample-inputs "$WORK/inp" --frames "$FRAMES" \
  --height 256 --width 128 || exit 1

# The generate runs go through this wrapper: engine.cli.main with the same arguments, plus
# each chunk's final float32 latents saved next to its frames (chunks/NNN/latents.pt), so
# the runs can also be compared before the VAE decode and the uint8 rounding (the tiny
# random VAE's output depends only weakly on the latents). Set TAP=0 for the bare CLI.
cat >"$WORK/tap.py" <<'PYEOF'
import sys

import torch

import engine.job as job
from engine.cli import main

_sample = job.sample


def _tapped(*args, **kwargs):
    latents = _sample(*args, **kwargs)
    state_path = kwargs.get("state_path")
    if latents is not None and state_path is not None:
        torch.save(latents.detach().float().cpu(), state_path.parent / "latents.pt")
    return latents


job.sample = _tapped
sys.exit(main(sys.argv[1:]))
PYEOF
if [ "${TAP:-1}" = 1 ]; then GEN=(python3 "$WORK/tap.py"); else GEN=(python3 -m engine.cli); fi

gen_args() {  # gen_args OUTDIR BUDGET
  echo --ckpt "$WORK/tiny" --image "$WORK/inp/reference.png" --pose "$WORK/inp/pose.mp4" \
    --hand "$WORK/inp/hand.mp4" --prompt-file "$WORK/inp/prompt.txt" --out "$1" \
    --height "$HEIGHT" --width "$WIDTH" -s 0 2 -b 2 4 --steps "$STEPS" --device "$DEVICE" -p "$2"
}

for b in none 0 1e6; do
  # shellcheck disable=SC2046
  run_timed "gen_$b" "${GEN[@]}" generate $(gen_args "$WORK/out_$b" "$b")
done

# ---- resume after SIGKILL -------------------------------------------------------------
say "resume test: start, SIGKILL after chunk 0 is done (mid-chunk if we catch a state file)"
R="$WORK/out_resume"
echo "===== resume_killed" >>"$LOG"
t1=$(ts)
# shellcheck disable=SC2046
"${GEN[@]}" generate $(gen_args "$R" none) >>"$LOG" 2>&1 &
pid=$!
killed=no; state_at_kill=""
for _ in $(seq 1 6000); do  # up to ~300 s at 50 ms
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  if [ -f "$R/chunks/000/done.json" ]; then
    st=$(ls "$R"/chunks/*/state.safetensors 2>/dev/null | head -1)
    ndone=$(ls "$R"/chunks/*/done.json 2>/dev/null | wc -l)
    if [ -n "$st" ] || [ "$ndone" -ge 2 ]; then
      kill -9 "$pid" 2>/dev/null && killed=yes
      state_at_kill="done_chunks=$ndone state_file=${st#$R/}"
      break
    fi
  fi
  sleep 0.05
done
wait "$pid" 2>/dev/null
rc_killed=$?
t2=$(ts)
echo "$killed" >"$WORK/resume.killed"
echo "$state_at_kill" >"$WORK/resume.state_at_kill"
say "resume: killed=$killed rc=$rc_killed after $(python3 -c "print(f'{$t2 - $t1:.2f}')") s ($state_at_kill)"
# shellcheck disable=SC2046
run_timed gen_resume "${GEN[@]}" generate $(gen_args "$R" none)

# ---- optional: the `none` run again (run-to-run determinism on this GPU) ---------------
if [ "$REPEAT" = 1 ] && python3 -c "import sys; sys.exit(0 if $(elapsed) < $TIME_LIMIT else 1)"; then
  # shellcheck disable=SC2046
  run_timed gen_none_repeat "${GEN[@]}" generate $(gen_args "$WORK/out_none_repeat" none)
else
  say "skipping the repeat run"
fi

# ---- compare and report ----------------------------------------------------------------
WORK="$WORK" OUT="$OUT" DEVICE="$DEVICE" FRAMES="$FRAMES" STEPS="$STEPS" HEIGHT="$HEIGHT" \
WIDTH="$WIDTH" python3 - 2>>"$LOG" <<'EOF'
import glob, json, os
from pathlib import Path

import cv2
import numpy as np

work, out = Path(os.environ["WORK"]), Path(os.environ["OUT"])
expect_frames = int(os.environ["FRAMES"])
env = json.loads((work / "env.json").read_text())


def read(p, default=None):
    p = work / p
    return p.read_text().strip() if p.exists() else default


def video_frames(path):
    if not path.exists():
        return None
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def chunks(d):
    res = {}
    for f in sorted(glob.glob(str(d / "chunks" / "*" / "done.json"))):
        j = json.loads(Path(f).read_text())
        res[j["index"]] = j
    return res


def frames(d):
    return {int(Path(f).parent.name): np.load(f)
            for f in sorted(glob.glob(str(d / "chunks" / "*" / "frames.npy")))}


def compare(a, b):
    fa, fb = frames(a), frames(b)
    if not fa or set(fa) != set(fb):
        return {"comparable": False, "chunks_a": sorted(fa), "chunks_b": sorted(fb)}
    per = {}
    for i in fa:
        if fa[i].shape != fb[i].shape:
            per[i] = {"shape_a": fa[i].shape, "shape_b": fb[i].shape}
            continue
        d = np.abs(fa[i].astype(np.int16) - fb[i].astype(np.int16))
        per[i] = {"max_abs": int(d.max()), "mean_abs": float(d.mean()),
                  "frac_diff": float((d > 0).mean())}
    mx = max(v.get("max_abs", 999) for v in per.values())
    res = {"comparable": True, "bitwise_equal": mx == 0, "max_abs": mx,
           "mean_abs": float(np.mean([v.get("mean_abs", 0.0) for v in per.values()])),
           "per_chunk": per}
    la, lb = latents(a), latents(b)
    if la and set(la) == set(lb):
        lat = {}
        for i in la:
            d = (la[i] - lb[i]).abs()
            lat[i] = {"max_abs": float(d.max()),
                      "rel_l2": float(d.norm() / la[i].norm().clamp_min(1e-30))}
        res["latents"] = {"bitwise_equal": all(v["max_abs"] == 0 for v in lat.values()),
                          "max_abs": max(v["max_abs"] for v in lat.values()),
                          "max_rel_l2": max(v["rel_l2"] for v in lat.values()),
                          "per_chunk": lat}
    return res


def latents(d):
    import torch
    return {int(Path(f).parent.name): torch.load(f)
            for f in sorted(glob.glob(str(d / "chunks" / "*" / "latents.pt")))}


names = {"none": "out_none", "0": "out_0", "1e6": "out_1e6", "resume": "out_resume",
         "none_repeat": "out_none_repeat"}
runs = {}
for key, sub in names.items():
    d = work / sub
    rc = read(f"gen_{key}.rc")
    if rc is None:
        continue
    ch = chunks(d)
    runs[key] = {
        "rc": int(rc), "wall_s": float(read(f"gen_{key}.seconds", "nan")),
        "video_frames": video_frames(d / "video.mp4"),
        "chunks": {i: {k: c.get(k) for k in ("role", "seconds", "steps_run",
                                             "seconds_per_step", "peak_vram_bytes")}
                   for i, c in ch.items()},
    }
    vals = [c["seconds_per_step"] for c in ch.values() if c.get("seconds_per_step")]
    runs[key]["mean_s_per_step"] = float(np.mean(vals)) if vals else None
    peaks = [c["peak_vram_bytes"] for c in ch.values() if c.get("peak_vram_bytes")]
    runs[key]["peak_vram_mib"] = round(max(peaks) / 2**20, 1) if peaks else None
    runs[key]["chunk_seconds_sum"] = round(sum(c["seconds"] for c in ch.values()), 2)

diffs = {k: compare(work / "out_none", work / names[k])
         for k in ("0", "1e6", "resume", "none_repeat") if k in runs}
placements = {}
try:  # what each -p did with the tiny DiT (resident vs streamed parameters)
    import torch

    from engine.budget import apply_budget, parse_budget
    from engine.checkpoint.dit_loader import load_dit
    from engine.checkpoint.layout import CheckpointLayout
    layout = CheckpointLayout(work / "tiny")
    dtype = torch.float32 if os.environ["DEVICE"] == "cpu" else torch.bfloat16
    for b in ("none", "0", "1e6"):
        m = load_dit(layout.dit_dir("base"), device="cpu", dtype=dtype)
        pl = apply_budget(m, parse_budget(b), torch.device(os.environ["DEVICE"]), dtype)
        placements[b] = {"resident_params": pl.resident_params,
                         "streamed_params": pl.streamed_params,
                         "resident_layers": pl.resident_layers,
                         "streamed_layers": pl.streamed_layers}
except Exception as e:  # noqa: BLE001 - reported in the JSON
    placements["error"] = f"{type(e).__name__}: {e}"
resume = {"killed": read("resume.killed"), "state_at_kill": read("resume.state_at_kill"),
          "steps_run_after_resume": {i: c["steps_run"] for i, c in
                                     runs.get("resume", {}).get("chunks", {}).items()}}
result = {"env": env, "settings": {k: os.environ[k] for k in
                                   ("DEVICE", "FRAMES", "STEPS", "HEIGHT", "WIDTH")},
          "setup_seconds": {"make_tiny": float(read("make_tiny.seconds", "nan")),
                            "sample_inputs": float(read("sample_inputs.seconds", "nan"))},
          "runs": runs, "placements": placements, "diff_vs_none": diffs, "resume": resume}
(out / "gpu_smoke.json").write_text(json.dumps(result, indent=2, default=str))

print()
print(f"device: {env.get('device_name', os.environ['DEVICE'])}  torch {env['torch']} "
      f"(CUDA {env.get('cuda')})  driver {env.get('driver')}  diffsynth {env.get('diffsynth')}")
print(f"| run (-p) | rc | wall s | sum chunk s | mean s/step | peak VRAM MiB | video frames "
      f"| frames vs none: max abs diff (uint8) | latents vs none: max abs diff (rel L2) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for key, r in runs.items():
    d = diffs.get(key)
    dtxt = "-" if key == "none" else (
        "not comparable" if not d or not d["comparable"] else
        ("0 (bitwise equal)" if d["bitwise_equal"] else
         f"{d['max_abs']} (mean {d['mean_abs']:.3g})"))
    lt = (d or {}).get("latents")
    ltxt = "-" if key == "none" else ("not saved" if not lt else
                                      ("0 (bitwise equal)" if lt["bitwise_equal"] else
                                       f"{lt['max_abs']:.3g} ({lt['max_rel_l2']:.2g})"))
    sps = f"{r['mean_s_per_step']:.4f}" if r["mean_s_per_step"] else "-"
    vf = r["video_frames"]
    vf_txt = f"{vf}{' OK' if vf == expect_frames else ' (expected %d)' % expect_frames}" \
        if vf is not None else "missing"
    print(f"| {key} | {r['rc']} | {r['wall_s']:.1f} | {r['chunk_seconds_sum']} | {sps} "
          f"| {r['peak_vram_mib']} | {vf_txt} | {dtxt} | {ltxt} |")
for b, pl in placements.items():
    print(f"placement -p {b}: {pl}")
print(f"resume: killed={resume['killed']} at {resume['state_at_kill']}; steps run after "
      f"resume per chunk: {resume['steps_run_after_resume']}")
EOF
say "done"

#!/usr/bin/env bash
# The wheels the device machine lacks (it has no internet): fetched here, carried as .whl/,
# installed there into /tmp/site (no index, no deps). Every bench/*.sh installs through this.
#
#   bash bench/wheels.sh fetch             # here: download them into .whl/ (then carry .whl)
#   bash bench/wheels.sh install [LOG]     # there: .whl/*.whl -> /tmp/site
#
# The device image has torch, transformers, accelerate, peft, einops, safetensors,
# sentencepiece, imageio, opencv and nvidia-ml-py; docs/benchmarks.md says why each is here.
set -euo pipefail
WHEELS=(
  diffsynth==2.1.12 modelscope==1.40.2 modelscope-hub==0.5.1  # the engine's model classes
  cryptography==50.0.2 cffi==2.1.1                            # imported by modelscope_hub
  ftfy==6.3.1 wcwidth==0.9.4                                  # Wan prompt cleaning
  imageio-ffmpeg==0.6.0                                       # ffmpeg for write_mp4
  sqlite-utils==4.2.1 sqlite-fts4==1.0.3 click-default-group==1.2.4 click==8.5.1
  tabulate==0.10.0 python-dateutil==4.0.0 pluggy==1.7.0 six==1.17.0
  platformdirs==4.14.9                                        # the session store
)
case "${1:-}" in
  fetch)
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    du -sh .whl ;;
  install)
    log=${2:-/dev/null}
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl >"$log" 2>&1 || { tail -20 "$log"; exit 1; } ;;
  *) echo "usage: bash bench/wheels.sh fetch|install [LOG]" >&2; exit 2 ;;
esac

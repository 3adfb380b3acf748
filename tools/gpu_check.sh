#!/usr/bin/env bash
# The GPU check: install from an offline folder, run the CUDA tests, run the
# GPU benchmarks under one stated protocol, and write OUTDIR/report.json.
#
#   bash tools/prepare_offline.sh .offline 3.12 manylinux2014_x86_64   # FIRST, where there is internet
#   bash tools/gpu_check.sh OUTDIR                                      # then, on the GPU machine
#
# Everything the report says stays next to it in OUTDIR, to be audited:
#   nvidia-smi.txt, install.log, steps.tsv (step, exit status, seconds, log),
#   pytest_cuda.log (pytest's whole output) and pytest_cuda.xml (JUnit),
#   bench_<name>.json (tools/benchmark.py --json: every run's time per row) and bench_<name>.log,
#   report.json (python -m mmswift.analysis.gpu_report OUTDIR): the failed, errored and skipped
#   tests by name, the benchmark rows with their files' SHA-256, and each mmswift model against
#   each peer, best setting against best setting and setting by setting.
#
# Protocol (also in report.json "protocol" and docs/speed.md, "GPU protocol"):
#   timing   wall clock of one call, torch.cuda.synchronize() before and after each timed call,
#            median of RUNS calls, entries interleaved round robin in one process
#   warm-up  WARMUP calls per entry (eager), COMPILE_WARMUP with torch.compile (the first compiles)
#   settings fp32 (eager), amp (eager, fp16 autocast), compile+amp (torch.compile, default mode)
#   TF32     off everywhere (--tf32 off); cudnn.benchmark off (PyTorch's default)
#   layout   NCHW for every model; channels_last is not used
#   rows     backbones: 224x224 at batch 1, 32, 256 and 800x1344 at batch 2, for mmswift L1
#            (training and deploy forms), timm's swiftformer_l1, torchvision ResNet-50 and
#            mmpretrain's EfficientFormer-L1; whole models: Mask R-CNN-L1 (both forms) vs R50
#            predict (800x1344, batch 1, fp32 and amp) and AMP training step (batch 2); Semantic
#            FPN-L1 (both forms) vs R50 predict (512x512, batch 1) and AMP training step (batch 4)
#
# Time (an estimate: this protocol has not run on a GPU yet; the committed H100 report records
# 188 s for the CUDA tests, docs/install.md ~6 min for a fresh install on an H100): install ~6 min
# on a fresh machine (seconds once the venv exists), CUDA tests ~3 min, benchmarks ~6 min (eager
# ~1.5 min, torch.compile ~3.5 min for 20 cold compiles, whole models ~1 min), so ~9-10 min after
# the install. Each step's seconds are in steps.tsv. GPU_CHECK_STEPS picks steps (default "install tests bench report"), e.g. the
# install in one call and "tests bench report" in the next; QUICK=1 runs 5 rounds and compiles
# at batch 32 and 256 only; DRY_RUN=1 prints the commands and runs nothing.
#
# Uses the machine's own torch (TORCH_VERSION=installed, a venv that sees the system's
# packages) and builds mmcv's CPU+CUDA ops from the folder's sdist. MMSWIFT_OFFLINE_DIR
# (default .offline) names the folder.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${1:?usage: bash tools/gpu_check.sh OUTDIR}"
STEPS=" ${GPU_CHECK_STEPS:-install tests bench report} "
export MMSWIFT_OFFLINE_DIR=${MMSWIFT_OFFLINE_DIR:-$ROOT/.offline}
if [[ $STEPS == *" install "* && ! -d $MMSWIFT_OFFLINE_DIR ]]; then
  echo "[gpu_check] error: $MMSWIFT_OFFLINE_DIR is not a folder: first run 'bash tools/prepare_offline.sh .offline PYTHON_VERSION PLATFORM' (e.g. 3.12 manylinux2014_x86_64) where there is internet and copy .offline here, or set MMSWIFT_OFFLINE_DIR" >&2
  exit 2
fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$ROOT"
export TORCH_VERSION=installed MMSWIFT_SYSTEM_SITE=1 PYTHONUNBUFFERED=1
export MMSWIFT_VENV=${MMSWIFT_VENV:-$ROOT/.venv-gpu}
PY=$MMSWIFT_VENV/bin/python
status=0
say() { echo "[gpu_check] $(date +%T) $*"; }
# run NAME LOG CMD...: CMD's whole output to OUTDIR/LOG, a line in steps.tsv
run() {
  local name=$1 log=$2 t0 rc; shift 2
  if [ -n "${DRY_RUN:-}" ]; then say "would run: $*"; return 0; fi
  say "$name"
  t0=$(date +%s)
  "$@" > "$OUT/$log" 2>&1; rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$log" >> "$OUT/steps.tsv"
  [ "$rc" = 0 ] || { status=1; say "$name failed (exit $rc), last lines of $OUT/$log:"; tail -5 "$OUT/$log"; }
  return "$rc"
}

[ -n "${DRY_RUN:-}" ] || nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
if [[ $STEPS == *" install "* ]]; then
  run install install.log bash tools/install.sh || exit 1
  [ -n "${DRY_RUN:-}" ] || "$PY" -c 'import torch, mmcv, mmcv._ext; from mmcv.ops import roi_align
x = torch.randn(1, 4, 8, 8, device="cuda"); r = torch.tensor([[0, 0, 0, 4, 4.]], device="cuda")
print("mmcv", mmcv.__version__, "CUDA RoIAlign ok:", tuple(roi_align(x, r, (2, 2)).shape))' | tee -a "$OUT/install.log"
fi

if [ -z "${DRY_RUN:-}" ] && [ ! -x "$PY" ]; then
  echo "[gpu_check] error: $PY does not exist: run the install step first (GPU_CHECK_STEPS=install)" >&2
  exit 2
fi

if [[ $STEPS == *" tests "* ]]; then
  run pytest_cuda pytest_cuda.log "$PY" -m pytest -m cuda -v -rA -p no:cacheprovider \
    --junitxml="$OUT/pytest_cuda.xml" tests/test_cuda.py
  [ -n "${DRY_RUN:-}" ] || tail -1 "$OUT/pytest_cuda.log"
fi

if [[ $STEPS == *" bench "* ]]; then
  RUNS=${RUNS:-10} WARMUP=${WARMUP:-5} COMPILE_WARMUP=${COMPILE_WARMUP:-2}
  [ -n "${QUICK:-}" ] && RUNS=5
  # NAME ARGS...: one interleaved tools/benchmark.py run, its JSON and log kept
  bench() {
    local name=$1; shift
    run "bench_$name" "bench_$name.log" "$PY" tools/benchmark.py --device cuda --tf32 off \
      --keep-going --json "$OUT/bench_$name.json" "$@"
  }
  # timm first: the tables' ratios are to it (the report's comparisons do not depend on order)
  backbones="timm-l1 l1 l1:deploy tv-resnet50 efficientformer-l1"
  amp() { for e in "$@"; do case $e in *:*) echo "$e:amp";; *) echo "$e::amp";; esac; done; }
  both() { for e in "$@"; do echo "$e"; amp "$e"; done; }
  declare -A shape=([b1_224]="--batch 1 --input 224 224" [b32_224]="--batch 32 --input 224 224"
                    [b256_224]="--batch 256 --input 224 224" [b2_800x1344]="--batch 2 --input 800 1344")
  for s in b1_224 b32_224 b256_224 b2_800x1344; do
    extra=""; [ "$s" = b32_224 ] && extra="ref-l1"  # checks l1 computes transformers' features
    # shellcheck disable=SC2046,SC2086
    bench "${s}_eager" $(both $backbones) $extra ${shape[$s]} --runs "$RUNS" --warmup "$WARMUP"
  done
  for s in b1_224 b32_224 b256_224 b2_800x1344; do
    [ -n "${QUICK:-}" ] && [ "$s" != b32_224 ] && [ "$s" != b256_224 ] && continue
    # shellcheck disable=SC2046,SC2086
    bench "${s}_compile" $(amp $backbones) ${shape[$s]} --compile --runs "$RUNS" --warmup "$COMPILE_WARMUP"
  done
  # shellcheck disable=SC2046
  bench maskrcnn_predict $(both maskrcnn-r50 maskrcnn-l1 maskrcnn-l1:deploy) --batch 1 \
    --input 800 1344 --runs "$RUNS" --warmup 3
  # shellcheck disable=SC2046
  bench fpn_predict $(both fpn-r50 fpn-l1 fpn-l1:deploy) --batch 1 --input 512 512 \
    --runs "$RUNS" --warmup 3
  # shellcheck disable=SC2046
  bench maskrcnn_train_amp $(amp maskrcnn-r50 maskrcnn-l1) --train-step --batch 2 \
    --input 800 1344 --runs "$RUNS" --warmup 3
  # shellcheck disable=SC2046
  bench fpn_train_amp $(amp fpn-r50 fpn-l1) --train-step --batch 4 --input 512 512 \
    --runs "$RUNS" --warmup 3
fi

if [[ $STEPS == *" report "* ]]; then
  say "report"
  if [ -n "${DRY_RUN:-}" ]; then say "would run: $PY -m mmswift.analysis.gpu_report $OUT"
  else "$PY" -m mmswift.analysis.gpu_report "$OUT" || status=1; fi
fi
say "done (status $status); results in $OUT"
exit $status

#!/usr/bin/env bash
# The GPU check: install from an offline folder, run the CUDA tests, run the
# GPU benchmarks, and write OUTDIR/report.json (plus each step's log and JSON).
#
#   bash tools/prepare_offline.sh .offline 3.12 manylinux2014_x86_64   # where there is internet
#   bash tools/gpu_check.sh OUTDIR                                      # on the GPU machine
#
# Uses the machine's own torch (TORCH_VERSION=installed, a venv that sees the
# system's packages) and builds mmcv's CPU+CUDA ops from the folder's sdist.
# MMSWIFT_OFFLINE_DIR (default .offline) names the folder; QUICK=1 runs fewer
# benchmark rounds.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(mkdir -p "${1:?usage: gpu_check.sh OUTDIR}" && cd "$1" && pwd)
cd "$ROOT"
export MMSWIFT_OFFLINE_DIR=${MMSWIFT_OFFLINE_DIR:-$ROOT/.offline} TORCH_VERSION=installed MMSWIFT_SYSTEM_SITE=1
export MMSWIFT_VENV=${MMSWIFT_VENV:-$ROOT/.venv-gpu} PYTHONUNBUFFERED=1
PY=$MMSWIFT_VENV/bin/python
status=0
step() { echo "[gpu_check] $(date +%T) $*"; }

step "install (mmcv's CUDA ops are compiled here)"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
if ! bash tools/install.sh > "$OUT/install.log" 2>&1; then
  step "install failed: see $OUT/install.log"; tail -20 "$OUT/install.log"; exit 1
fi
"$PY" -c 'import torch, mmcv, mmcv._ext; from mmcv.ops import roi_align; import torch
x = torch.randn(1, 4, 8, 8, device="cuda"); r = torch.tensor([[0, 0, 0, 4, 4.]], device="cuda")
print("mmcv", mmcv.__version__, "CUDA RoIAlign ok:", tuple(roi_align(x, r, (2, 2)).shape))' | tee -a "$OUT/install.log"

step "pytest -m cuda"
"$PY" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py > "$OUT/pytest_cuda.log" 2>&1 || status=1
tail -3 "$OUT/pytest_cuda.log"

runs=20; [ -n "${QUICK:-}" ] && runs=5
bench() {  # NAME ARGS...: one interleaved benchmark run
  local name=$1; shift
  step "benchmark $name"
  "$PY" tools/benchmark.py --device cuda --json "$OUT/bench_$name.json" "$@" \
    > "$OUT/bench_$name.log" 2>&1 || { status=1; tail -5 "$OUT/bench_$name.log"; }
}
peers="timm-l1 l1 l1:deploy ref-l1 efficientformer-l1 poolformer-s12 tv-resnet18 tv-resnet50"
amp() { for e in $1; do case $e in *:*:*) echo "$e";; *:*) echo "$e:amp";; *) echo "$e::amp";; esac; done; }
bench b32_224_fp32 $peers --batch 32 --input 224 224 --runs $runs --warmup 5
bench b32_224_amp $(amp "$peers") --batch 32 --input 224 224 --runs $runs --warmup 5
bench b1_224_amp $(amp "$peers") --batch 1 --input 224 224 --runs $runs --warmup 5
bench b32_224_amp_compile $(amp "timm-l1 l1 l1:deploy tv-resnet50") --batch 32 \
  --input 224 224 --runs $runs --warmup 3 --compile
bench b2_800x1344_fp32 $peers --batch 2 --input 800 1344 --runs 10 --warmup 3
bench b2_800x1344_amp $(amp "$peers") --batch 2 --input 800 1344 --runs 10 --warmup 3
bench maskrcnn_predict_amp $(amp "maskrcnn-r50 maskrcnn-r18 maskrcnn-l1 maskrcnn-l1:deploy") \
  --input 800 1344 --runs 10 --warmup 3
bench fpn_predict_amp $(amp "fpn-r50 fpn-r18 fpn-l1 fpn-l1:deploy") --input 512 512 --runs 10 --warmup 3
bench maskrcnn_train_amp $(amp "maskrcnn-r50 maskrcnn-l1") --train-step --batch 2 \
  --input 800 1344 --runs 10 --warmup 3

step "report"
"$PY" - "$OUT" <<'PYEOF'
import glob, json, os, platform, sys, torch
out = sys.argv[1]
report = dict(torch=torch.__version__, cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(),
              python=platform.python_version(), benchmarks={})
tail = open(os.path.join(out, 'pytest_cuda.log')).read().strip().splitlines()
report['pytest_cuda'] = tail[-1] if tail else 'no output'
for path in sorted(glob.glob(os.path.join(out, 'bench_*.json'))):
    b = json.load(open(path))
    report['benchmarks'][os.path.basename(path)[6:-5]] = dict(
        input_hw=b['input_hw'], batch=b['batch'], compile=b['compile'], measured=b['measured'],
        rows=[{k: r.get(k) for k in ('entry', 'median_s', 'ratio', 'throughput_img_s',
                                     'peak_mem_mb', 'split_s', 'max_rel_diff_vs_reference')}
              for r in b['results']])
json.dump(report, open(os.path.join(out, 'report.json'), 'w'), indent=1)
print(json.dumps({k: v for k, v in report.items() if k != 'benchmarks'}))
PYEOF
step "done (status $status); results in $OUT"
exit $status

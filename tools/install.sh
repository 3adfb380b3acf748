#!/usr/bin/env bash
# Install mmswift and its OpenMMLab stack into a virtual environment (default: ./.venv).
#
#   bash tools/install.sh
#
# Order matters: torch first (CPU wheel), then mmcv with compiled ops, then the rest.
# mmcv has no binary wheel on PyPI and its sdist takes ~30 min to build on 2 cores, so a
# ready wheel is looked up first, keyed on mmcv, torch and Python versions:
#   1. the local wheel cache   ($MMSWIFT_WHEEL_CACHE, default ~/.cache/mmswift/wheels/<key>/)
#   2. the shared wheelhouse    ($MMSWIFT_WHEELHOUSE, default <repo>/../shared/wheelhouse/),
#      which holds mmcv 2.1.0 for CPython 3.11 + torch 2.13.0+cpu only
#   3. otherwise the PyPI sdist is built with MMCV_WITH_OPS=1 and the wheel is cached;
#      with CUDA present (torch built with CUDA and nvcc on PATH) the ops are built for
#      CUDA too (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST defaults to this machine's GPU).
#
# Offline (no index; a folder made by tools/prepare_offline.sh on a machine with one):
#   MMSWIFT_OFFLINE_DIR=DIR TORCH_VERSION=installed MMSWIFT_SYSTEM_SITE=1 bash tools/install.sh
# TORCH_VERSION=installed keeps the torch that is already there; MMSWIFT_SYSTEM_SITE=1 makes
# the venv see the system's packages (that torch, numpy, opencv, ...). The test requirements
# are not installed offline.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMSWIFT_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
MMCV_VERSION=2.1.0
CACHE_ROOT=${MMSWIFT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmswift/wheels}
WHEELHOUSE=${MMSWIFT_WHEELHOUSE:-$ROOT/../shared/wheelhouse}
OFFLINE=${MMSWIFT_OFFLINE_DIR:-}

log() { echo "[install] $*"; }
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  if [ -n "${MMSWIFT_SYSTEM_SITE:-}" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
    # a venv's own packages are not a "system" site: chain them with a .pth file
    parent=$("$PYTHON" -c 'import site, sys; print(site.getsitepackages()[0] if sys.prefix != sys.base_prefix else "")')
    if [ -n "$parent" ]; then
      "$VENV/bin/python" -c 'import site, sys; open(site.getsitepackages()[0] + "/_mmswift_parent_env.pth", "w").write(sys.argv[1] + "\n")' "$parent"
    fi
  else "$PYTHON" -m venv "$VENV"; fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)
if [ -n "$OFFLINE" ]; then
  [ -d "$OFFLINE" ] || { echo "[install] error: MMSWIFT_OFFLINE_DIR=$OFFLINE is not a folder; make it with tools/prepare_offline.sh" >&2; exit 2; }
  PIP+=(--no-index --find-links "$OFFLINE")
fi
# mmcv's own dependencies: from the index, or offline from requirements/offline.txt
MMCV_DEPS=(); [ -n "$OFFLINE" ] && MMCV_DEPS=(--no-deps)

if [ "$TORCH_VERSION" = installed ]; then
  "$PY" -c 'import torch' 2>/dev/null || { echo "[install] error: TORCH_VERSION=installed but $PY cannot import torch; set MMSWIFT_SYSTEM_SITE=1 or install torch first" >&2; exit 2; }
  log "build tools; keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
  if [ -n "$OFFLINE" ]; then "${PIP[@]}" -q "setuptools<82" wheel; else "${PIP[@]}" -q "setuptools<82" wheel ninja psutil; fi
else
  log "build tools and torch==$TORCH_VERSION"
  "${PIP[@]}" -q "setuptools<82" wheel ninja psutil
  "${PIP[@]}" -q "torch==$TORCH_VERSION"
fi

if [ -n "$OFFLINE" ]; then  # before mmcv: importing mmcv needs mmengine
  log "OpenMMLab stack from $OFFLINE (requirements/offline.txt)"
  "${PIP[@]}" -q --no-deps -r "$ROOT/requirements/offline.txt"
fi

torch_full=$("$PY" -c 'import torch; print(torch.__version__)')
py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
key="mmcv-$MMCV_VERSION-torch$torch_full-$py_tag"
cache_dir="$CACHE_ROOT/$key"

mmcv_ok() {
  "$PY" - "$MMCV_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys, mmcv, mmcv._ext  # _ext: the compiled ops Mask R-CNN needs (RoIAlign, NMS)
assert mmcv.__version__ == sys.argv[1]
PYEOF
}

if mmcv_ok; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  wheel=""
  for cand in "$cache_dir"/mmcv-"$MMCV_VERSION"-*.whl; do [ -f "$cand" ] && wheel=$cand && break; done
  if [ -z "$wheel" ] && [ "$torch_full" = "2.13.0+cpu" ] && [ "$py_tag" = "cp311" ] && [ "$(uname -m)" = "x86_64" ]; then
    for cand in "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-cp311-*.whl; do [ -f "$cand" ] && wheel=$cand && break; done
  fi
  if [ -n "$wheel" ]; then
    log "installing ready mmcv wheel $wheel"
    "${PIP[@]}" -q --no-deps --force-reinstall "$wheel"
    # its runtime dependencies (opencv, addict, yapf, ...) come from PyPI
    "${PIP[@]}" -q "${MMCV_DEPS[@]}" "$wheel"
  else
    src="mmcv==$MMCV_VERSION"
    [ -n "$OFFLINE" ] && src="$OFFLINE/mmcv-$MMCV_VERSION.tar.gz"
    if "$PY" -c 'import sys, torch; from torch.utils.cpp_extension import CUDA_HOME; sys.exit(not (torch.version.cuda and CUDA_HOME))' 2>/dev/null; then
      export FORCE_CUDA=1
      if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
        TORCH_CUDA_ARCH_LIST=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || true)
        export TORCH_CUDA_ARCH_LIST
      fi
      log "no ready mmcv wheel for $key: building mmcv $MMCV_VERSION with CPU and CUDA ops (arch ${TORCH_CUDA_ARCH_LIST:-torch default}) from $src"
    else
      log "no ready mmcv wheel for $key: building mmcv $MMCV_VERSION with ops from $src (~30 min on 2 cores)"
    fi
    mkdir -p "$cache_dir"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel --no-build-isolation --no-deps \
      -w "$cache_dir" "$src"
    "${PIP[@]}" -q "${MMCV_DEPS[@]}" "$cache_dir"/mmcv-"$MMCV_VERSION"-*.whl
  fi
  mmcv_ok || { echo "[install] error: mmcv $MMCV_VERSION installed but 'import mmcv._ext' fails; delete $cache_dir and run again to rebuild" >&2; exit 1; }
fi
# keep a copy in the local cache so a later fresh venv need not look further
if [ ! -d "$cache_dir" ] || ! ls "$cache_dir"/mmcv-*.whl >/dev/null 2>&1; then
  if [ -n "${wheel:-}" ]; then mkdir -p "$cache_dir" && cp "$wheel" "$cache_dir/"; fi
fi

if [ -z "$OFFLINE" ]; then
  log "OpenMMLab stack, test requirements and mmswift (editable)"
  torch_pin="torch==$TORCH_VERSION"
  [ "$TORCH_VERSION" = installed ] && torch_pin="torch==$torch_full"
  # runtime.txt and tests.txt hold ranges (what setup.py declares); tested.txt pins
  # them to the exact set CI tests
  "${PIP[@]}" -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
    -c "$ROOT/requirements/tested.txt" "$torch_pin"
fi
if [ -n "$OFFLINE" ]; then  # setuptools' develop would start an isolated (online) build
  "${PIP[@]}" -q --no-build-isolation --no-deps "$ROOT"
else
  "${PIP[@]}" -q --no-build-isolation --no-deps -e "$ROOT"
fi
"$PY" -c 'import mmswift, mmdet, mmseg, mmcv.ops; print("[install] ok: mmswift", mmswift.__version__, "mmdet", mmdet.__version__, "mmseg", mmseg.__version__)'
log "done in $(( $(date +%s) - start )) s; activate with: source $VENV/bin/activate"

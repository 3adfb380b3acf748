#!/usr/bin/env bash
# Prepare a folder to install mmswift's OpenMMLab stack on a machine with no
# internet (a cluster node, a GPU box): wheels for the target Python and
# platform, and mmcv's source (it has no binary wheels; install.sh builds it
# there, with CUDA ops when CUDA is present).
#
#   bash tools/prepare_offline.sh DIR [PYTHON_VERSION] [PLATFORM]
#   bash tools/prepare_offline.sh offline 3.12 manylinux_2_28_x86_64
#
# Then, on the target:  MMSWIFT_OFFLINE_DIR=DIR bash tools/install.sh
# The list is requirements/offline.txt; torch and the usual scientific stack
# are expected to be there already (the target's PyTorch environment).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:?usage: prepare_offline.sh DIR [PYTHON_VERSION] [PLATFORM]}
PYVER=${2:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
PLATFORM=${3:-manylinux2014_x86_64}
mkdir -p "$DIR"
platforms=(--platform "$PLATFORM")
# manylinux tags are matched exactly: offer the common ones older wheels use
for n in 2_17 2_24 2_27 2_28 2_31 2_34; do platforms+=(--platform "manylinux_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
grep -v '^#' "$ROOT/requirements/offline.txt" | sed '/^\s*$/d' | while read -r req; do
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PYVER" --implementation cp "${platforms[@]}" -d "$DIR" "$req" \
    || { echo "error: no wheel of '$req' for Python $PYVER on $PLATFORM" >&2; exit 2; }
done
# mmcv: the source archive itself (pip download would run its setup.py, which
# needs torch and pkg_resources), found on the package index's simple page
python3 - "$DIR" <<'PYEOF'
import os, re, sys, urllib.parse, urllib.request
page = os.environ.get('PIP_INDEX_URL', 'https://pypi.org/simple').rstrip('/') + '/mmcv/'
html = urllib.request.urlopen(page).read().decode()
href = next(h for h in re.findall(r'href="([^"]+)"', html)
            if h.split('#')[0].endswith('/mmcv-2.1.0.tar.gz'))
dest = os.path.join(sys.argv[1], 'mmcv-2.1.0.tar.gz')
if not os.path.exists(dest):
    urllib.request.urlretrieve(urllib.parse.urljoin(page, href.split('#')[0]), dest)
PYEOF
echo "[prepare_offline] $(ls "$DIR" | wc -l) files, $(du -sh "$DIR" | cut -f1) in $DIR for Python $PYVER ($PLATFORM)"

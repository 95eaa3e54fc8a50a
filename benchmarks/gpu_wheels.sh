#!/usr/bin/env bash
# Downloads into .whl/ (ignored by git) the wheels that benchmarks/gpu.sh installs on a GPU
# machine: what the project and the peers need that the GPU image (Python 3.12, jax 0.11,
# torch 2.11; DESIGN.md, the device tool's KINDS.md) lacks. Run here, where pip reaches the
# package index; then carry .whl (and .data) in the device call.
#
#   benchmarks/gpu_wheels.sh            # about 7 MB
#
# nni's wheel holds a 175 MB web UI (nni_node/) that the supernets never import: it is
# repacked without it (and without its RECORD lines), which keeps the carried tree under the
# device tool's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
WHEELS=(
  # the project (optuna and what it needs; the rest is on the image)
  optuna==5.0.0 alembic==1.20.1 Mako==1.4.3 SQLAlchemy==2.1.9 colorlog==6.12.0
  # NNI 3.0 (DARTS and SPOS peers) and what it needs beyond the image
  nni==3.0 astor==0.8.1 json-tricks==3.17.3 prettytable==3.16.0 wcwidth==0.2.13
  PythonWebHDFS==0.2.3 responses==0.25.7 schema==0.7.7 typeguard==4.1.2 websockets==15.0.1
  # mit-han-lab ofa (OFA peer; torchvision is on the image)
  ofa==0.1.0.post202307202001
)
rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$DEST" "${WHEELS[@]}"

# nni without nni_node/: rewrite the wheel in place (zip members and RECORD).
"$PY" - "$DEST"/nni-3.0-*.whl <<'EOF'
import sys, zipfile, os
src = sys.argv[1]
tmp = src + ".tmp"
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if item.filename.startswith("nni_node/"):
            continue
        data = zin.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(ln for ln in lines if not ln.startswith("nni_node/")).encode()
        zout.writestr(item, data)
os.replace(tmp, src)
EOF
du -sh "$DEST"
ls "$DEST"

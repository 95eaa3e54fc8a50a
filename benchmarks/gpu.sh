#!/usr/bin/env bash
# The GPU check, in one prepared run (DESIGN.md "The GPU machines"): on a machine with
# nothing to fetch from, it installs the carried wheels, runs the test suite's fast subset
# on the GPU, then the supernet step benchmarks at their published sizes, ours and the
# PyTorch peers on the same GPU (benchmarks/gpu_steps.py), and writes one JSON.
#
#   benchmarks/gpu.sh [--smoke] [--out DIR]
#
# --smoke: the same phases on the CPU at tiny sizes, a few tests only, peers optional (what
#          CI runs, through tests/test_gpu_script.py).
# --out:   folder for gpu.json and the test log (default benchmarks/results).
#
# Carried in (all ignored by git, named in the device tool's `carry`):
#   .whl/   wheels for Python 3.12 that the GPU image lacks: benchmarks/gpu_wheels.sh
#           downloads them (optuna and what it needs, nni without its web UI, ofa);
#           installed with --no-deps into /tmp/site, as the device README says.
#   .data/  a copy of ../shared/data (the reference tables; `cp -r ../shared/data .data`).
#
# Time: under 8 minutes on one H100: tests at most 150 s, each of our three supernet parts at
# most 80 s (compile included), each peer part at most 30 s. Environment: PYTHON (default
# python3), TEST_WORKERS (default 8), GPU_PARTS (a subset of benchmarks/gpu_steps.py's
# parts, default all).
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
OUT=benchmarks/results
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: benchmarks/gpu.sh [--smoke] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
mkdir -p "$OUT"
T0=$(date +%s)

# 1. Carried wheels (optuna & co., peers; built for the GPU image's Python 3.12, so not in
#    smoke mode) and data.
if [ $SMOKE = 0 ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "gpu.sh: installing .whl failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The checkout runs in place (nas/_layout.py maps nas.search_spaces and nas.predictors).
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -d .data ] && export NAS_DATA_DIR=$PWD/.data
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
# Several test workers share the GPU: no worker may take most of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# float32 matmuls in full precision, as on the CPU (the tests compare with float32 references).
export JAX_DEFAULT_MATMUL_PRECISION=highest

if [ $SMOKE = 1 ]; then
  export JAX_PLATFORMS=cpu
  TEST_BUDGET=600 PART_BUDGET=900 PEER_BUDGET=120 WORKERS=0 STEPS=1
  TESTS=(tests/test_compat.py tests/test_refdata.py::test_lookup_order)
else
  TEST_BUDGET=150 PART_BUDGET=80 PEER_BUDGET=30 WORKERS=${TEST_WORKERS:-8} STEPS=10
  # Not on the GPU: Ray and PostgreSQL (not on the image), this script's own smoke run.
  TESTS=(-m "not slow" --ignore=tests/test_ray.py --ignore=tests/test_postgres.py
    --ignore=tests/test_gpu_script.py)
fi

# 2. The fast test subset on this machine's default JAX backend (the GPU there).
"$PY" - "$OUT/gpu_env.json" <<'EOF'
import json, platform, sys
import jax
json.dump({"python": platform.python_version(), "jax": jax.__version__,
           "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]},
          open(sys.argv[1], "w"))
EOF
# SIGINT at the budget: pytest stops, and still writes its summary and the XML.
timeout -s INT -k 30 "$TEST_BUDGET" "$PY" -m pytest -q -p no:cacheprovider --timeout 300 \
  $([ "$WORKERS" -gt 0 ] && echo "-n $WORKERS") --junitxml="$OUT/gpu_tests.xml" \
  "${TESTS[@]}" >"$OUT/gpu_tests.log" 2>&1
TESTS_RC=$?
tail -3 "$OUT/gpu_tests.log"

# 3. Supernet steps, ours and the peers, each part in its own process.
# shellcheck disable=SC2086  # GPU_PARTS: a word list (benchmarks/gpu_steps.py --parts)
"$PY" -m benchmarks.gpu_steps $([ $SMOKE = 1 ] && echo --smoke) --steps "$STEPS" \
  --timeout "$PART_BUDGET" --peer-timeout "$PEER_BUDGET" --out "$OUT/gpu_steps.json" \
  ${GPU_PARTS:+--parts $GPU_PARTS}
STEPS_RC=$?

# 4. One JSON: environment, test counts, step timings.
"$PY" - "$OUT" "$TESTS_RC" "$STEPS_RC" "$(( $(date +%s) - T0 ))" "$SMOKE" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out, tests_rc, steps_rc, wall, smoke = Path(sys.argv[1]), *map(int, sys.argv[2:])
tests = {"exit_code": tests_rc, "timed_out": tests_rc in (124, 130, 137)}
if (out / "gpu_tests.xml").exists():
    suites = ET.parse(out / "gpu_tests.xml").getroot().iter("testsuite")
    for s in suites:
        for k in ("tests", "failures", "errors", "skipped"):
            tests[k] = tests.get(k, 0) + int(s.get(k, 0))
    failed = [c.get("classname", "") + "::" + c.get("name", "")
              for c in ET.parse(out / "gpu_tests.xml").getroot().iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    tests["failed"] = failed[:50]
doc = {"mode": "smoke" if smoke else "gpu", "wall_s": wall,
       "env": json.loads((out / "gpu_env.json").read_text()), "tests": tests,
       "steps": json.loads((out / "gpu_steps.json").read_text()) if steps_rc == 0 else
                {"error": f"gpu_steps exited {steps_rc}"}}
(out / "gpu.json").write_text(json.dumps(doc, indent=1))
print(json.dumps({"wall_s": wall, "tests": {k: tests.get(k) for k in ("tests", "failures", "errors", "skipped")},
                  **{k: v for k, v in doc["steps"].items() if k.endswith("speedup")}}))
EOF
# The script fails when a phase could not run; test failures and benchmark errors on the GPU
# are results (in gpu.json). In smoke mode everything must pass.
[ $STEPS_RC = 0 ] || exit 1
if [ $SMOKE = 1 ]; then
  [ $TESTS_RC = 0 ] || exit 1
  "$PY" -c "import json, sys; d = json.load(open(sys.argv[1]))['steps']
sys.exit(any(isinstance(v, dict) and 'error' in v for v in d.values()))" "$OUT/gpu.json" || exit 1
fi

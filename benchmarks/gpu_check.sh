#!/usr/bin/env bash
# GPU check (issue 8): the batched benchmark and the full softmax reproduction on a CUDA GPU.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on a machine with a GPU
#
# Installs moetheory with JAX's CUDA 12 wheels into ./.venv-gpu, checks that JAX sees a GPU,
# runs benchmarks/batched.py (R = 40 replicates, n = 1e4, k = 3; then R = 400 to show batching
# at GPU scale), times `moetheory study run softmax --preset full`, and prints the tables.
# Results go to benchmarks/results/gpu_*.{md,json} and benchmarks/results/gpu_full_softmax.json.
#
# Not run in issue 8's session: no GPU was lent to that task.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# Offline machines: set WHEELHOUSE to a directory of wheels (jax, jaxlib, the jax-cuda12
# plugin/pjrt wheels and moetheory's dependencies) to install without network access.
PIP_OPTS=(-q)
if [ -n "${WHEELHOUSE:-}" ]; then
  PIP_OPTS+=(--no-index --find-links "$WHEELHOUSE")
else
  "$VENV/bin/pip" install -q --upgrade pip
fi
# The [cuda] extra is meant to pull jax[cuda12]; install that explicitly as well in case the
# extra is still empty in pyproject.toml.
"$VENV/bin/pip" install "${PIP_OPTS[@]}" -e ".[cuda]"
"$VENV/bin/pip" install "${PIP_OPTS[@]}" "jax[cuda12]"

"$VENV/bin/python" - <<'EOF'
import jax
print("JAX", jax.__version__, "backend:", jax.default_backend(), "devices:", jax.devices())
if jax.default_backend() != "gpu":
    raise SystemExit("no GPU visible to JAX: stop")
EOF

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

cd benchmarks
"../$VENV/bin/python" batched.py --replicates 40 --out gpu_batched
"../$VENV/bin/python" batched.py --replicates 400 --repeats 2 --out gpu_batched_R400
cd ..

"$VENV/bin/python" - <<'EOF'
import json, sys
sys.path.insert(0, "benchmarks")
import run_all
res = run_all.full_softmax("full", quiet=False)
print(json.dumps(res, indent=1))
json.dump(res, open("benchmarks/results/gpu_full_softmax.json", "w"), indent=1)
EOF

cat benchmarks/results/gpu_batched.md benchmarks/results/gpu_batched_R400.md

#!/usr/bin/env bash
# The GPU benchmark run: every benchmark that has a GPU question, in one prepared script with a
# deadline, for a session that is lent an accelerator for a few minutes.
#
#   bash benchmarks/device_run.sh OUT_DIR [SECONDS]      (run from the repository root)
#
# Parts run in priority order; each gets at most its own limit and what is left of SECONDS
# (default 540), and writes OUT_DIR/NAME.txt as it goes (a part cut off keeps what it
# printed). A smoke step first: if optlab cannot train one step on the device, nothing else
# runs (so a broken environment costs seconds, not the whole lease). OUT_DIR/log.txt has the
# environment and each part's exit status and wall time.
set -u
out=${1:?usage: device_run.sh OUT_DIR [SECONDS]}
budget=${2:-540}
[[ $budget =~ ^[0-9]+$ ]] || { echo "device_run.sh: SECONDS must be a whole number, got $budget" >&2; exit 2; }
mkdir -p "$out"
start=$(date +%s)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
log="$out/log.txt"
py=${PYTHON:-python3}

{  # under timeouts too: a hanging driver must not take the whole budget
  date -u; timeout 20 nvidia-smi -L 2>&1 || true
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv 2>&1 || true
  timeout 60 "$py" -c 'import jax, optax, flax, sys; print("python", sys.version.split()[0],
"jax", jax.__version__, "optax", optax.__version__, "flax", flax.__version__, jax.devices())'
} >"$log" 2>&1

# part NAME LIMIT_S COMMAND...: runs COMMAND with at most LIMIT_S and what is left of the budget
part() {
  local name=$1 limit=$2; shift 2
  local left=$((budget - ($(date +%s) - start)))
  ((left < limit)) && limit=$left
  if ((limit < 15)); then echo "$name: skipped (budget spent)" >>"$log"; return; fi
  local t0 rc; t0=$(date +%s)
  timeout -k 5 "$limit" "$py" "$@" >"$out/$name.txt" 2>&1
  rc=$?
  echo "$name: exit $rc after $(($(date +%s) - t0)) s (limit $limit s)" >>"$log"
}

part smoke 60 benchmarks/step_time.py --quick --optimizers adam
if ! grep -q '| adam |' "$out/smoke.txt"; then
  echo "smoke failed: see smoke.txt" >>"$log"; exit 1
fi
# Issue 9: optlab vs optax step time, every optimizer, at 10M then 1M parameters.
part step_time_1e7 300 benchmarks/step_time.py --optimizers all --sizes 1e7 --reps 100 \
  --rounds 4 --json "$out/step_time_1e7.json"
# Issue 12: learned optimizers and K-FAC relative to Adam.
part learned_cost 75 benchmarks/learned_cost.py --sizes 1e6,1e7
part kfac_cost 70 benchmarks/kfac_cost.py --reps 20
# Training loop and grid on the device (mapped vs vmapped runs), then a WRN loop.
part train_throughput 70 benchmarks/train_throughput.py --models mlp,cnn1d --epochs 4
part step_time_1e6 120 benchmarks/step_time.py --optimizers all --sizes 1e6 --reps 100 \
  --rounds 4
part train_wrn 90 benchmarks/train_throughput.py --random-images 10000 --models wrn \
  --epochs 3 --sections 1
# optlab's main job (README's `make demo`) on the device, results outside OUT_DIR.
demo_out=${TMPDIR:-/tmp}/optlab-device-demo-$$
part demo 120 -c "import sys; from optlab.cli import main; sys.exit(main(sys.argv[1:]))" \
  compare --task mnist1d --optimizers sgd,momentum,adam,amsgrad,adamw,powersign,addsign,lion \
  --lrs 1e-3,3e-3,1e-2,3e-2,1e-1 --seeds 3 --epochs 20 --out "$demo_out"
echo "total $(($(date +%s) - start)) s" >>"$log"

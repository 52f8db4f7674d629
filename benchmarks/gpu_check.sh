#!/usr/bin/env bash
# The checks for a lent GPU machine, in one run (the device tool's `run`): tests/test_gpu.py, training
# throughput on the device (benchmarks/training_speed.py --device cuda), the torch sweeping eikonal's
# speed there (benchmarks/sweeping_eikonal.py --device cuda --speed-only) and a short training budget
# (benchmarks/train_budget.py --device cuda). Logs and JSON go to $OUT. The machine's own Python (with
# CUDA torch) runs the working tree; packages it lacks come as wheels in .device_wheels/ (pure Python;
# scikit-fmm is imported only by the eikonal forward, which these checks do not use).
set -uo pipefail
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT="${OUT:-$(mktemp -d)}"
extra="$(mktemp -d)"
if compgen -G ".device_wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --target "$extra" .device_wheels/*.whl
fi
# geoinv's own metadata: its solvers and forwards are found through entry points
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$extra" . > /dev/null
export PYTHONPATH="$PWD:$extra" GEOINV_BENCHMARK_RESULTS="$OUT"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.log"
python3 -m benchmarks training_speed --device cuda --seconds "${SPEED_SECONDS:-5}" --rounds 2 \
    --name gpu_training_speed 2>&1 | tee "$OUT/training_speed.log"
python3 -m benchmarks sweeping_eikonal --device cuda --speed-only --batch 25 \
    --name gpu_sweeping_eikonal 2>&1 | tee "$OUT/sweeping_eikonal.log"
if [ "${BUDGET_MINUTES:-3}" != 0 ]; then
    python3 -m benchmarks train_budget --device cuda --images shipped --settings beta250 \
        --minutes "${BUDGET_MINUTES:-3}" --name gpu_train_budget 2>&1 | tail -n 25 | tee "$OUT/train_budget.log"
fi

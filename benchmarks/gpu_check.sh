#!/usr/bin/env bash
# The CUDA backend's check on a machine with a GPU (issue 15), in one run, every log in OUTDIR:
#   1. build and install lamina with its CUDA kernels (pip install --no-build-isolation: no package
#      index needed; pybind11, scikit-build-core and cmake must be installed), sm_90 only
#   2. the GPU test suite (tests/gpu, `-m gpu`: every op forward and backward on gpu:0 against the
#      CPU, training on the GPU against the CPU, two virtual GPUs: copies, model parallel, pipeline)
#   3. benchmarks/bench_gpu.py against PyTorch CUDA, each section under its own time limit
#   4. which kernels still run on the host, where a convnet's and an LSTM's training step spends its
#      time (benchmarks/gpu_profile.py), and a compute-sanitizer memcheck of the GPU tests
# It is meant to finish in about 7 minutes on an H200. Usage: benchmarks/gpu_check.sh OUTDIR
set -uo pipefail
dest=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
# Logs are written to a work folder; at exit OUTDIR gets summary.txt, tests.log, bench.log,
# fallbacks.txt, profile.txt and logs.tgz (every log): 6 files, under the 8 that a lent machine's tool returns.
out=$(mktemp -d)
pack() {
  cp "$out"/summary.txt "$out"/tests.log "$out"/bench.log "$out"/fallbacks.txt "$out"/profile.txt "$dest"/ 2>/dev/null
  tar czf "$dest/logs.tgz" -C "$out" . 2>/dev/null
}
trap pack EXIT
trap 'exit 143' TERM INT
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
export CUDACXX=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
# the CUDA emulator (a test tool for machines without a GPU) is not built here
export CMAKE_ARGS="-DLAMINA_CUDA=ON -DLAMINA_CUDA_EMULATOR=OFF -DCMAKE_CUDA_ARCHITECTURES=${LAMINA_CUDA_ARCH:-90} ${CMAKE_ARGS:-}"
status=0
# Every step's time limit is cut to what is left of LAMINA_CHECK_SECONDS (default 540 s) in all.
deadline=$(( $(date +%s) + ${LAMINA_CHECK_SECONDS:-540} ))
lim() { local r=$(( deadline - $(date +%s) )); if [ "$1" -lt "$r" ]; then echo "$1"; else echo $(( r > 5 ? r : 5 )); fi; }
step() { echo "== $(date +%T) $*" | tee -a "$out/summary.txt"; }

step "environment"
{ nvidia-smi; "$CUDACXX" --version; $py -c "import sys, numpy, torch; print(sys.version); print('numpy', numpy.__version__, 'torch', torch.__version__, torch.cuda.is_available())"; } >"$out/env.txt" 2>&1
tail -3 "$out/env.txt" | tee -a "$out/summary.txt"

step "build and install (log: build.log)"
t0=$(date +%s)
if ! $py -m pip install --no-build-isolation --no-deps --no-index -v . >"$out/build.log" 2>&1; then
  step "BUILD FAILED"; grep -n "error" "$out/build.log" | head -40 | tee -a "$out/summary.txt"; exit 1
fi
echo "built in $(( $(date +%s) - t0 )) s" | tee -a "$out/summary.txt"
cd /tmp  # from here on the installed package, not the source tree
root=$OLDPWD
$py -c "import lamina; print('devices', lamina.devices(), lamina.get_device('gpu:0').kernels.module.device_name(0))" 2>&1 | tee -a "$out/summary.txt"

step "cuDNN smoke test: a convolution and its gradients through cuDNN against the CPU (log: cudnn.log)"
# cuDNN is new on this machine's runs: should it crash or disagree, the rest of the check runs without it
# (LAMINA_USE_CUDNN=0), so that one fault does not hide every convolution test.
if ! timeout $(lim 60) $py - >"$out/cudnn.log" 2>&1 <<'PY'
import importlib, numpy as np, lamina
from lamina import ops
dm = importlib.import_module("lamina.backend.device")
dm._gpu_table()
print("cuDNN:", dm._CUDA.cudnn_status())
x = np.random.default_rng(0).normal(size=(4, 17, 15, 6)).astype("float32")
k = np.random.default_rng(1).normal(size=(3, 3, 6, 8)).astype("float32")
def run(d):
    with lamina.device(d):
        xv, kv = lamina.Variable(x), lamina.Variable(k)
        with lamina.GradientTape() as tape:
            y = ops.conv(xv, kv, strides=2, padding="valid") + ops.conv(xv, kv, padding="same")[:, :8, :7]
            loss = ops.sum(y * y)
        return [t.numpy() for t in [y] + tape.gradient(loss, [xv, kv])]
want, got = run("cpu:0"), run("gpu:0")
print("cuDNN calls run, refused (6 expected run):", dm._CUDA.cudnn_counts(), "| plans:", dm._CUDA.cudnn_plans())
print("cuDNN status after:", dm._CUDA.cudnn_status())
for g, w in zip(got, want):  # a refusal is fine (lamina's kernels run it); a wrong answer or a crash is not
    np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3)
print("ok")
PY
then
  export LAMINA_USE_CUDNN=0
  echo "cuDNN smoke test FAILED: the rest of this check runs with LAMINA_USE_CUDNN=0" | tee -a "$out/summary.txt"
fi
tail -4 "$out/cudnn.log" | tee -a "$out/summary.txt"

step "NCCL through MultiWorkerMirroredStrategy: one process (MPI singleton) training on gpu:0 (log: nccl.log)"
timeout $(lim 60) $py - >"$out/nccl.log" 2>&1 <<'PY'
import numpy as np, lamina
from lamina import layers
rng = np.random.default_rng(0)
x = rng.normal(size=(48, 8)).astype("float32")
y = (x[:, :1] * 0.5 - x[:, 1:2]).astype("float32")
def build():
    m = lamina.Sequential([lamina.Input((8,)), layers.Dense(16, activation="relu"), layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    return m
s = lamina.distribute.MultiWorkerMirroredStrategy()
with s.scope(), lamina.device("gpu:0"):
    m = build()
w0 = m.get_weights()
with lamina.device("gpu:0"):
    m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
print("gradients:", s.gradient_communication)
ref = build()
ref.set_weights(w0)
ref.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
for a, b in zip(m.get_weights(), ref.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
print("ok: equal to the CPU's training")
PY
tail -3 "$out/nccl.log" | tee -a "$out/summary.txt"

step "GPU tests, one pytest process per file so that a crash hides no other file (log: tests.log)"
for f in "$root"/tests/gpu/test_*.py; do
  echo "== $(basename "$f")" >>"$out/tests.log"
  timeout $(lim 100) $py -m pytest "$f" -c "$root/tests/pytest.ini" -m gpu -q -p no:cacheprovider -rfE \
    >>"$out/tests.log" 2>&1 || status=1
done
grep -E "^== |passed|failed|skipped|deselected|^FAILED|^ERROR|Fatal Python error" "$out/tests.log" | tee -a "$out/summary.txt"

if grep -q "Fatal Python error" "$out/tests.log" && command -v cuda-gdb >/dev/null; then
  # a crash: the native backtrace of the (first) test that crashed (cuda-gdb also debugs host code)
  crashed=$(grep -m1 -o "in test_[A-Za-z0-9_]*" "$out/tests.log" | cut -c4-)
  step "native backtrace of the crash in ${crashed:-?} (log: crash.log)"
  timeout $(lim 60) cuda-gdb -batch -ex run -ex bt -ex "info threads" --args $py -m pytest "$root/tests/gpu" \
    -c "$root/tests/pytest.ini" -m gpu -q -x -p no:cacheprovider ${crashed:+-k "$crashed"} >"$out/crash.log" 2>&1
  grep -A25 "signal SIG" "$out/crash.log" | head -40 | tee -a "$out/summary.txt"
fi

step "GPU tests again with LAMINA_LAUNCH_BLOCKING=1, failures only (log: tests_blocking.log)"
if [ $status -ne 0 ]; then
  LAMINA_LAUNCH_BLOCKING=1 timeout $(lim 60) $py -m pytest "$root/tests/gpu" -c "$root/tests/pytest.ini" -m gpu -q -x \
    -p no:cacheprovider >"$out/tests_blocking.log" 2>&1
  tail -40 "$out/tests_blocking.log" >>"$out/summary.txt"
fi

step "kernels still on the host in a convnet and an LSTM training step (fallbacks.txt)"
timeout $(lim 60) $py - >"$out/fallbacks.txt" 2>&1 <<'PY'
import numpy as np, lamina
from lamina import layers
with lamina.device("gpu:0"):
    m = lamina.Sequential([lamina.Input((28, 28, 1)), layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2),
                           layers.Flatten(), layers.Dense(10)])
    r = lamina.Sequential([lamina.Input((20,), dtype="int32"), layers.Embedding(100, 16), layers.LSTM(32),
                           layers.Dense(100)])
for model, x, y in ((m, np.random.rand(64, 28, 28, 1).astype("float32"), np.random.randint(0, 10, 64)),
                    (r, np.random.randint(0, 100, (64, 20)), np.random.randint(0, 100, 64))):
    model.compile("adam", lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
t = lamina.get_device("gpu:0").kernels
print("native:", sorted(t.native))
print("host fallbacks:", sorted(t.fallbacks.items(), key=lambda kv: -kv[1]))
print("cuBLAS:", t.module.cublas_status())
print("cuDNN:", t.module.cudnn_status(), "| convolution calls run, refused:", t.module.cudnn_counts())
print("cuDNN plans (key..., taken, fwd algo, ws, bwd data algo, ws, bwd filter algo, ws):", t.module.cudnn_plans())
import importlib
dm = importlib.import_module("lamina.backend.device")
dm.load_nccl()
print("NCCL:", t.module.nccl_status())
PY
cat "$out/fallbacks.txt" | tee -a "$out/summary.txt"

step "where a training step's time goes: kernel calls, fallbacks, host profile (profile.txt)"
for m in convnet lstm; do
  timeout $(lim 60) $py "$root/benchmarks/gpu_profile.py" --device gpu:0 --model $m >>"$out/profile.txt" 2>&1
done
grep -E "^# |kernel calls a step|host fallbacks" "$out/profile.txt" | tee -a "$out/summary.txt"

export LAMINA_VIRTUAL_GPUS=2  # gpu:0 and gpu:1 on one card for the pipeline section
step "benchmarks (log: bench.log, bench_<section>.json)"
for s in gemm:40 lstm:40 convnet:40 inception:120 pipeline:90; do
  secs=${s#*:}; s=${s%%:*}
  timeout $(lim $secs) $py "$root/benchmarks/bench_gpu.py" --sections $s --rounds 1 --json "$out/bench_$s.json" \
    >>"$out/bench.log" 2>&1 || echo "bench $s: exit $?" | tee -a "$out/summary.txt"
done
grep -E "^\||^lamina: " "$out/bench.log" | tee -a "$out/summary.txt"

step "compute-sanitizer memcheck over the GPU tests (log: memcheck.log)"
if command -v compute-sanitizer >/dev/null; then
  timeout $(lim 120) compute-sanitizer --tool memcheck --print-limit 20 $py -m pytest "$root/tests/gpu" \
    -c "$root/tests/pytest.ini" -m gpu -q -x -p no:cacheprovider >"$out/memcheck.log" 2>&1 || status=1
  grep -m 20 "ERROR SUMMARY\|Invalid\|passed\|failed" "$out/memcheck.log" | tee -a "$out/summary.txt"
fi
step "done (status $status)"
exit $status

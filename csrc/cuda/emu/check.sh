#!/usr/bin/env bash
# The GPU tests on a CUDA emulator built another way, to find before a GPU does what it would:
#   fma       g++ contracts a * b + c into FMAs, as nvcc compiles device code by default: a test
#             that fails here compares bit for bit results of kernels that do not spell out their
#             roundings (__fmul_rn / __fadd_rn / philox.cuh's helpers).
#   sanitize  AddressSanitizer and UndefinedBehaviorSanitizer: out-of-bounds and misaligned
#             accesses and integer overflows in the kernels, which fault or go wrong on a GPU.
# Needs the in-place build (.ci/dev) for the CPU module; builds its own emulator in build/emu-MODE
# and a package tree there.
#
#     bash csrc/cuda/emu/check.sh fma|sanitize [pytest arguments, e.g. -k sort]
set -euo pipefail
mode=${1:?"usage: check.sh fma|sanitize [pytest arguments]"}
shift
root=$(cd "$(dirname "$0")/../../.." && pwd)
py=${PYTHON:-python3}
b="$root/build/emu-$mode"
case "$mode" in
  fma) flags=("-DLAMINA_CUDA_EMULATOR_FP=-mfma -ffp-contract=fast") ;;
  sanitize) flags=("-DLAMINA_CUDA_EMULATOR_SANITIZE=-fsanitize=address,undefined -fno-sanitize-recover=undefined") ;;
  *) echo "check.sh: unknown mode '$mode' (fma or sanitize)" >&2; exit 2 ;;
esac
cmake -S "$root" -B "$b" -DCMAKE_BUILD_TYPE=Release -DLAMINA_CUDA=OFF "${flags[@]}" \
  -Dpybind11_DIR="$($py -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v $py)" >/dev/null
cmake --build "$b" --target _cuda_emu -j "${LAMINA_BUILD_JOBS:-2}"
rm -rf "$b/pkg" && mkdir -p "$b/pkg/lamina"
(cd "$root" && git ls-files -z -c -o --exclude-standard '*.py' | tar --null -T - -cf -) | tar -xf - -C "$b/pkg/lamina"
cp "$root"/backend/_cpu*.so "$b/pkg/lamina/backend/"
cp "$b"/_cuda_emu*.so "$b/pkg/lamina/backend/"
env=(LAMINA_CUDA_EMULATOR=1 PYTHONPATH="$b/pkg")
if [ "$mode" = sanitize ]; then
  # Python is not built with ASan: its runtime goes first, leaks are Python's business
  # (and libstdc++ before any module, so that its exception interceptor finds __cxa_throw)
  env+=(LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
        ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
        UBSAN_OPTIONS=print_stacktrace=1)
fi
cd "$b/pkg"
env "${env[@]}" $py -m pytest -q -p no:warnings -p no:cacheprovider -m gpu -c "$root/tests/pytest.ini" \
  "$root/tests/gpu" "$@"

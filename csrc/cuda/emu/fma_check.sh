#!/usr/bin/env bash
# The GPU tests on a CUDA emulator whose kernels g++ compiles with FMA contraction, as nvcc compiles
# device code by default: a test that passes on the default emulator (no contraction) and fails
# here compares results that depend on contraction (bit-for-bit checks of kernels that do not
# spell out their roundings with __fmul_rn / __fadd_rn / philox.cuh's helpers), and would likely
# fail on a GPU too. Needs the in-place build (.ci/dev) for the CPU module; builds its own
# emulator in build/emu-fma and a package tree in build/emu-fma/pkg.
#
#     bash csrc/cuda/emu/fma_check.sh [pytest arguments, e.g. -k sort]
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
py=${PYTHON:-python3}
b="$root/build/emu-fma"
cmake -S "$root" -B "$b" -DCMAKE_BUILD_TYPE=Release -DLAMINA_CUDA=OFF \
  "-DLAMINA_CUDA_EMULATOR_FP=-mfma -ffp-contract=fast" \
  -Dpybind11_DIR="$($py -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v $py)" >/dev/null
cmake --build "$b" --target _cuda_emu -j "${LAMINA_BUILD_JOBS:-2}"
rm -rf "$b/pkg" && mkdir -p "$b/pkg/lamina"
(cd "$root" && git ls-files -z -c -o --exclude-standard '*.py' | tar --null -T - -cf -) | tar -xf - -C "$b/pkg/lamina"
cp "$root"/backend/_cpu*.so "$b/pkg/lamina/backend/"
cp "$b"/_cuda_emu*.so "$b/pkg/lamina/backend/"
cd "$b/pkg"
LAMINA_CUDA_EMULATOR=1 PYTHONPATH="$b/pkg" $py -m pytest -q -p no:warnings -p no:cacheprovider -m gpu \
  -c "$root/tests/pytest.ini" "$root/tests/gpu" "$@"

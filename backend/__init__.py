"""lamina's backend: tensors, devices, autodiff and the ops over the compiled kernels."""
import os as _os

# OpenMP threads that spin while they wait keep their core from other processes, and a team
# waiting on a descheduled thread stalls. libgomp spins 300,000 times before sleeping; 2,000
# costs nothing on an idle machine and doubles training throughput beside a busy process
# (benchmarks/bench_contention.py). Read by libgomp when the kernel module loads; a policy the
# user set (OMP_WAIT_POLICY, GOMP_SPINCOUNT) wins.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "2000"
from . import dtypes
from .autodiff import GradientTape, no_grad
from .device import Device, current_device, device, devices, get_device, list_devices, set_virtual_gpus, synchronize
from .tensor import Tensor, Variable, convert_to_numpy, convert_to_tensor, is_tensor
from . import math, linalg, manipulation, nn, random, rnn, extra  # noqa: F401  (attach Tensor operators)
from ._cpu import memory_stats, empty_cache, num_threads, set_num_threads  # noqa: F401
# Keras's keras.backend settings (lamina/__init__.py adds clear_session, is_keras_tensor and get_uid,
# which live above the backend)
from .settings import (backend, epsilon, floatx, image_data_format, set_epsilon, set_floatx,  # noqa: F401
                       set_image_data_format)
from .dtypes import is_float_dtype, is_int_dtype, standardize_dtype  # noqa: F401
from .dtypes import keras_result_type as result_type  # noqa: F401

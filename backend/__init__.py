"""lamina's backend: tensors, devices, autodiff and the ops over the compiled kernels."""
from . import dtypes
from .autodiff import GradientTape, no_grad
from .device import Device, current_device, device, get_device, list_devices
from .tensor import Tensor, Variable, convert_to_numpy, convert_to_tensor, is_tensor
from . import math, linalg, manipulation, nn, random, rnn, extra  # noqa: F401  (attach Tensor operators)
from ._cpu import memory_stats, empty_cache, num_threads, set_num_threads  # noqa: F401

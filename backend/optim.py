"""The optimizers' fused updates (csrc/cpu/optim.cpp) and the few in-place helpers they use:
each kernel updates a variable and its slots in place, in one pass over them. The optimizers
(optimizers/*.py) compute a step's scalars and call these functions; they do not reach the
device's kernels themselves. Slot variables may be given as Variables (their buffers are
passed) or as None where a kernel takes an optional one."""
from . import sparse as _sparse
from .tensor import Tensor


def _buffers(args):
    return [a._buf if isinstance(a, Tensor) else a for a in args]


def update(kernel, variable, gradient, *args):
    """The fused update `kernel` (sgd, adam, rmsprop, adagrad, adadelta, adamax, nadam, ftrl,
    lion, lamb, adafactor) of `variable`: kernel(var, grad, *args) for a dense gradient,
    kernel_sparse(var, row_size, indices, values, *args) for an IndexedSlices' rows."""
    k = variable.device.kernels
    args = _buffers(args)
    if _sparse.is_indexed_slices(gradient):
        getattr(k, kernel + "_sparse")(variable._buf, gradient.row_size, gradient.indices._buf,
                                       gradient.values._buf, *args)
    else:
        getattr(k, kernel)(variable._buf, gradient._buf, *args)


def update_many(kernel, variables, gradients, *args):
    """One call of the fused update `kernel` + "_multi" (adam_multi) for several variables on one
    device with dense gradients: a list argument holds one entry per variable (its slots, its own
    numbers), any other is shared by all."""
    k = variables[0].device.kernels
    getattr(k, kernel + "_multi")([v._buf for v in variables], [g._buf for g in gradients],
                                  *[_buffers(a) if isinstance(a, list) else a for a in args])


def weight_decay(variable, rate, learning_rate):
    """variable -= variable * rate * learning_rate, in place."""
    variable.device.kernels.weight_decay(variable._buf, float(rate), float(learning_rate))


def axpby(a, x, b, y):
    """y = a * x + b * y, in place (moving averages of the weights)."""
    y.device.kernels.axpby(float(a), x._buf, float(b), y._buf)


def fill(variable, value):
    """Every element of variable set to value, in place."""
    variable.device.kernels.fill(variable._buf, float(value))


def copy_into(source, variable):
    """variable's values replaced by source's (same shape and device), in place."""
    variable.device.kernels.copy(source._buf, variable._buf)


def add_rows(accumulator, gradient):
    """accumulator[indices] += values for an IndexedSlices gradient (rows added in place, never
    densified)."""
    accumulator.device.kernels.embedding_scatter_add(accumulator._buf, gradient.dense_shape[0], gradient.row_size,
                                                     gradient.indices._buf, gradient.values._buf, False)

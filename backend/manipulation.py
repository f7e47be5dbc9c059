"""Array manipulation (numpy's family): reshape, transpose, concatenate, split, slicing,
gather, stack, pad, with gradients."""
import numpy as np

from .autodiff import needs_grad, record
from .math import _as_tensor
from .tensor import Tensor


def _resolve_shape(shape, size, op="reshape", src=None):
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"{op}: only one dimension can be -1, received {shape}")
    if -1 in shape:
        known = 1
        for d in shape:
            if d != -1:
                known *= d
        if known == 0 or size % known:
            raise ValueError(f"{op}: cannot reshape a tensor of shape {src} ({size} elements) into {shape}")
        shape = tuple(size // known if d == -1 else d for d in shape)
    n = 1
    for d in shape:
        if d < 0:
            raise ValueError(f"{op}: invalid dimension {d} in {shape}")
        n *= d
    if n != size:
        raise ValueError(f"{op}: cannot reshape a tensor of shape {src} ({size} elements) into {shape} ({n} elements)")
    return shape


def reshape(x, newshape):
    """Same elements in a new shape (shares the buffer; no copy)."""
    x = _as_tensor(x)
    shape = _resolve_shape(newshape, x.size, "reshape", x.shape)
    if shape == x.shape:
        return x
    out = Tensor(x._buf, shape, x.dtype, x.device)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (reshape(g, x.shape),))
    return out


def _tensor_reshape(self, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return reshape(self, shape)


Tensor.reshape = _tensor_reshape

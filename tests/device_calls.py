"""Helpers of the device tests (tests/gpu): calling a kernel on a device with buffers made from
numpy, running an op (and its gradients) on a device, comparing errors with cpu:0's."""
import numpy as np
import pytest

import lamina
from lamina import ops


def device_of(d):
    return lamina.get_device(d) if isinstance(d, str) else d


class KernelCall:
    """One kernel call on a device: numpy inputs become buffers there (`buf`), `out(shape, dtype,
    fill)` a buffer pre-filled with a sentinel (so that an element the kernel fails to write shows),
    `none()` an output not asked for; `results()` reads the outputs back in order (None for those)."""

    def __init__(self, device):
        self.d = device_of(device)
        self.k = self.d.kernels
        self.outs = []

    def buf(self, a):
        return self.d.from_numpy(np.ascontiguousarray(a))

    def out(self, shape, dtype="float32", fill=7):
        a = np.full(shape, fill, dtype=np.dtype(dtype))
        b = self.buf(a)
        self.outs.append((b, a.shape))
        return b

    def none(self):
        self.outs.append((None, None))

    def results(self):
        return [self.k.to_numpy(b, list(s)) if b is not None else None for b, s in self.outs]


def same_error(fn, dev):
    """fn(device) raises on cpu:0; the device raises the same error type and message."""
    with pytest.raises(Exception) as want:
        fn("cpu:0")
    with pytest.raises(type(want.value)) as got:
        fn(dev)
    assert str(got.value) == str(want.value)
    return want.value


def run_op(fn, inputs, device, grad):
    """fn(*tensors) on `device`: its outputs as numpy (grad False), or the gradients of a weighted
    sum of its output with respect to the float32 inputs (grad True)."""
    with lamina.device(device):
        ts = [lamina.Variable(x) if (grad and x.dtype == np.float32) else lamina.convert_to_tensor(x) for x in inputs]
        if not grad:
            out = fn(*ts)
            return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]
        with lamina.GradientTape() as tape:
            out = fn(*ts)
            w = lamina.convert_to_tensor(np.linspace(-1, 1, int(np.prod(out.shape)), dtype=np.float32).reshape(out.shape))
            loss = ops.sum(out * w)
        return [g.numpy() for g in tape.gradient(loss, [t for t in ts if isinstance(t, lamina.Variable)])]

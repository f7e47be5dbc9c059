"""Tensor and Variable.

A Tensor owns a Buffer on one device (shared with its reshapes), a shape tuple and a dtype
name. Tensors are immutable; a Variable is a tensor whose buffer is updated in place by
`assign`, `assign_add` and `assign_sub`. Python operators and indexing are attached by the op
modules (math.py, linalg.py, manipulation.py).
"""
import sys

import numpy as np

from . import dtypes, validation
from .device import Device, current_device, get_device
from .naming import unique_name


class Tensor:
    __slots__ = ("_buf", "shape", "dtype", "device", "_node", "_rg", "_keras_mask", "__weakref__")
    # numpy's operators defer to the tensor's own (ndarray + tensor is a tensor), by the priority,
    # while numpy functions and ufuncs (np.abs(t), np.exp(t)) work on its values through
    # __array__ and give arrays, as they do on JAX's arrays
    __array_priority__ = 1000

    def __init__(self, buf, shape, dtype, device):
        self._buf = buf
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self._node = None
        self._rg = False
        self._keras_mask = None  # set by layers that produce a mask (Embedding(mask_zero=True), Masking)

    # ---- properties -----------------------------------------------------------------------
    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return self._buf.numel if self.shape else 1

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ---- host transfer ----------------------------------------------------------------------
    def numpy(self):
        """Copies the tensor to a new numpy array on the host. A bfloat16 tensor comes as float32
        (numpy has no bfloat16; float32 holds each of its values exactly)."""
        a = self.device.kernels.to_numpy(self._buf, self.shape)
        return dtypes.bf16_bits_to_float32(a) if self.dtype == dtypes.BFLOAT16 else a

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a.astype(dtype) if dtype is not None else a

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if not dtypes.is_int(self.dtype):
            raise TypeError(f"only integer tensors can be used as an index, this one is {self.dtype}")
        return int(self.item())

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"The truth value of a tensor of shape {self.shape} is ambiguous; "
                             "use ops.any(x) or ops.all(x)")
        return bool(self.item())

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}, shape={self.shape}, dtype={self.dtype}, device={self.device.name})"

    __hash__ = object.__hash__

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(self.shape[0]):
            yield self[i]

    def to(self, device):
        """Copy of this tensor on another device (differentiable)."""
        from .manipulation import copy_to
        return copy_to(self, device)

    def astype(self, dtype):
        from .math import cast
        return cast(self, dtype)

    # numpy-style reductions, so np.sum(t) and friends work too
    def sum(self, axis=None, keepdims=False, **unused):
        from .math import sum as _sum
        return _sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False, **unused):
        from .math import mean
        return mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False, **unused):
        from .math import max as _max
        return _max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False, **unused):
        from .math import min as _min
        return _min(self, axis=axis, keepdims=keepdims)


class Variable(Tensor):
    """A tensor updated in place: weights, optimizer slots, counters.

        v = lamina.Variable(np.zeros((3,)), name="bias")
        v.assign_add(ones)   # in place: tensors made from v before keep their values
    """

    __slots__ = ("name", "_trainable", "_path", "constraint", "_autocast")

    def __init__(self, initializer, shape=None, dtype=None, trainable=True, name=None):
        dev = current_device()
        if callable(initializer) and not isinstance(initializer, (Tensor, np.ndarray)):
            if shape is None:
                raise ValueError("Variable: a callable initializer needs `shape`, e.g. "
                                 "Variable(initializers.Zeros(), shape=(3,))")
            if isinstance(initializer, type):   # an initializer class, as keras.initializers.zeros
                initializer = initializer()
            value = initializer(tuple(shape), dtype=dtypes.standardize(dtype))
        else:
            value = initializer
        t = convert_to_tensor(value, dtype=dtype, device=dev)
        if shape is not None and tuple(shape) != t.shape:
            raise ValueError(f"Variable: initial value has shape {t.shape}, but shape={tuple(shape)} was given")
        # Own a fresh buffer: the variable must not alias the tensor it was made from.
        buf = t.device.buffer(t._buf.numel, dtypes.CODES[t.dtype])
        t.device.kernels.copy(t._buf, buf)
        super().__init__(buf, t.shape, t.dtype, t.device)
        self.name = name if name is not None else unique_name("variable")
        self._trainable = bool(trainable)
        self._rg = self._trainable and dtypes.is_float(self.dtype)
        self.constraint = None  # applied by the optimizer after each update (Keras's variable.constraint)
        self._autocast = True  # read in the compute dtype inside a mixed precision layer's call (add_weight)

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        self._rg = self._trainable and dtypes.is_float(self.dtype)

    @property
    def value(self):
        return self

    @property
    def path(self):
        """'layer_name/weight_name' for layer weights, else the name."""
        return getattr(self, "_path", None) or self.name

    def _coerce(self, value, what):
        t = value if isinstance(value, Tensor) else convert_to_tensor(value, self.dtype, self.device)
        if t.shape != self.shape:
            raise ValueError(f"Variable '{self.name}'.{what}: expected a value of shape {self.shape}, "
                             f"received shape {t.shape}")
        if t.dtype != self.dtype:
            from .math import cast
            t = cast(t, self.dtype)
        if t.device is not self.device:
            raise ValueError(f"Variable '{self.name}'.{what}: the variable is on {self.device.name} but "
                             f"the value is on {t.device.name}; move it with value.to('{self.device.name}')")
        return t

    def assign(self, value):
        """Writes `value` (same shape) into the variable's buffer."""
        t = self._coerce(value, "assign")
        self.device.kernels.copy(t._buf, self._buf)
        return self

    def copy_from(self, source):
        """Writes the values of `source` (a tensor of the same shape and dtype, on any device of the
        same kernel module) into this variable, in the order of both devices' queues."""
        if not isinstance(source, Tensor) or source.shape != self.shape or source.dtype != self.dtype:
            raise ValueError(f"Variable '{self.name}'.copy_from: expected a tensor of shape {self.shape} and dtype "
                             f"{self.dtype}, received {getattr(source, 'shape', type(source).__name__)}")
        if source.device.kernels is self.device.kernels:
            self.device.kernels.copy_between(source._buf, self._buf)
        else:  # host <-> accelerator: through host memory
            self.assign(convert_to_tensor(source.numpy(), self.dtype, self.device))
        return self

    def assign_add(self, value):
        t = self._coerce(value, "assign_add")
        self.device.kernels.binary(0, self._buf, self.shape, t._buf, t.shape, self._buf, self.shape)
        return self

    def assign_sub(self, value):
        t = self._coerce(value, "assign_sub")
        self.device.kernels.binary(1, self._buf, self.shape, t._buf, t.shape, self._buf, self.shape)
        return self

    def __repr__(self):
        return (f"<Variable '{self.name}' shape={self.shape} dtype={self.dtype} "
                f"device={self.device.name} trainable={self._trainable}>")


# ---- construction ---------------------------------------------------------------------------

SUPPORTED = "float32, int32, int64 and bool"


def empty(shape, dtype="float32", device=None, op=None):
    """An uninitialised tensor (internal: ops allocate their outputs with it). A shape too large
    for one buffer is a MemoryError naming `op` (default: the calling function), the shape and
    the bytes, raised before anything is allocated."""
    dev = device if device is not None else current_device()
    n = 1
    for d in shape:
        n *= d
    if n >= validation.ALWAYS_FITS:
        op = op or validation.op_name(sys._getframe(1))   # only on this (rare) path: the op that asked
        validation.check_alloc(op, shape, dtype, dev)
        try:
            buf = dev.buffer(n, dtypes.CODES[dtype])
        except MemoryError as e:
            raise MemoryError(f"{op}: could not allocate a tensor of shape {tuple(shape)} and dtype {dtype} on "
                              f"{dev.name} ({validation.nbytes(shape, dtype)} bytes): {e}") from e
        return Tensor(buf, shape, dtype, dev)
    return Tensor(dev.buffer(n, dtypes.CODES[dtype]), shape, dtype, dev)


def _infer_dtype(a):
    if a.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 (JAX's, TensorFlow's)
        return dtypes.BFLOAT16
    k = a.dtype.kind
    if k == "f":
        return dtypes.FLOAT32   # float64 / float16 data computes in float32, as Keras does with floatx float32
    if k == "b":
        return dtypes.BOOL
    if k in "iu":
        # int8/16/32 and uint8/16 fit int32; uint32 needs int64
        return dtypes.INT32 if k == "i" and a.dtype.itemsize <= 4 or k == "u" and a.dtype.itemsize <= 2 \
            else dtypes.INT64
    raise TypeError(f"Cannot convert an array of dtype {a.dtype} to a tensor: expected numbers or booleans")


def _check_data_dtype(a, dt):
    """Data lamina cannot hold exactly: complex numbers, and uint64 values above int64's range,
    which would wrap to negative integers."""
    if a.dtype.kind == "c":
        raise TypeError(f"Cannot convert an array of dtype {a.dtype} to a tensor: complex numbers are not supported "
                        f"(lamina's dtypes are {SUPPORTED}); convert the real part (x.real) or the magnitude "
                        "(np.abs(x)) yourself")
    if a.dtype.kind == "u" and a.dtype.itemsize == 8 and dtypes.is_int(dt) and a.size:
        top = a.max()
        if top > np.iinfo(np.int64).max:
            raise TypeError(f"Cannot convert an array of dtype uint64 holding {top} to a tensor: lamina's integers "
                            f"are int32 and int64 (dtypes {SUPPORTED}), and values above "
                            f"{np.iinfo(np.int64).max} do not fit int64; convert them to float32, or make them "
                            "smaller, first")


def convert_to_tensor(x, dtype=None, device=None, sparse=None, ragged=None):
    """Converts arrays, Python scalars and nested lists to a Tensor.

    Inferred dtypes: float data (float64, float16) becomes float32, as Keras does with floatx
    float32; bool stays bool; int8/int16/int32/uint8/uint16 become int32, int64/uint32/uint64 int64.
    Complex data, uint64 values beyond int64's range and an explicit dtype lamina does not
    compute in (e.g. dtype="float64") raise TypeError naming the dtype and the supported ones.
    A Tensor passes through (cast when `dtype` differs); a sparse gradient (IndexedSlices) becomes
    its dense tensor. New tensors go on `device` or the current device scope. Keras's `sparse` and
    `ragged` may be None or False: lamina's tensors are dense."""
    if sparse or ragged:
        raise ValueError(f"convert_to_tensor: {'sparse' if sparse else 'ragged'}=True is not supported: lamina's "
                         "tensors are dense (pass False or leave it unset)")
    if getattr(x, "_is_indexed_slices", False):  # a sparse row gradient: densified by a C++ scatter-add
        x = x.to_dense()
    if isinstance(x, Tensor):
        if dtype is not None and dtypes.standardize(dtype) != x.dtype:
            from .math import cast
            return cast(x, dtype)
        return x
    dev = get_device(device) if device is not None else current_device()
    if isinstance(x, (list, tuple)) and any(isinstance(e, Tensor) for e in _iter_nested(x)):
        x = _nested_to_numpy(x)
    a = np.asarray(x)
    if a.dtype == object or a.dtype.kind in "US" or a.dtype.kind == "V" and a.dtype.name != "bfloat16":
        raise TypeError(f"Cannot convert {type(x).__name__} {x!r:.60} to a tensor: expected numbers or booleans")
    if a.dtype.kind == "c":
        _check_data_dtype(a, None)
    dt = dtypes.standardize(dtype) if dtype is not None else _infer_dtype(a)
    _check_data_dtype(a, dt)
    if a.size >= validation.ALWAYS_FITS:
        validation.check_alloc("convert_to_tensor", a.shape, dt, dev)
    a = np.asarray(a, dtype=dtypes.to_numpy_dtype(dt), order="C")
    if dt == dtypes.BFLOAT16:  # rounded from float32 by the cast kernel
        out = empty(a.shape, dt, dev)
        dev.kernels.cast(dev.from_numpy(a), out._buf)
        return out
    return Tensor(dev.from_numpy(a), a.shape, dt, dev)


def _iter_nested(x):
    for e in x:
        if isinstance(e, (list, tuple)):
            yield from _iter_nested(e)
        else:
            yield e


def _nested_to_numpy(x):
    if isinstance(x, Tensor):
        return x.numpy()
    if isinstance(x, (list, tuple)):
        return [_nested_to_numpy(e) for e in x]
    return x


def convert_to_numpy(x):
    """A numpy copy of a tensor; other inputs through np.asarray."""
    if isinstance(x, Tensor):
        return x.numpy()
    from .quantization import Int8Weight
    if isinstance(x, Int8Weight):   # a quantized layer's int8 kernel
        return x.numpy()
    return np.asarray(x)


def is_tensor(x):
    return isinstance(x, Tensor)

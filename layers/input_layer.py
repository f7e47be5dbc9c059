"""Symbolic inputs of the functional API: `Input(shape)` returns a KerasTensor, which layers
turn into graph nodes instead of computing."""
import numpy as np

from ..backend import dtypes
from .layer import Layer, _shape_str


class KerasTensor:
    """A symbolic tensor: a shape (None for unknown dims), a dtype, and where it came from. The
    dtype "string" (inputs of text preprocessing layers) stands for numpy arrays of str."""

    __slots__ = ("shape", "dtype", "name", "_keras_history", "_keras_mask")

    def __init__(self, shape, dtype="float32", name=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = _standardize(dtype)
        self.name = name
        self._keras_history = None  # (layer, node_index, tensor_index)
        self._keras_mask = None

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={_shape_str(self.shape)}, dtype={self.dtype}, name={self.name}>"

    def __hash__(self):
        return id(self)

    def numpy(self):
        raise ValueError("A symbolic KerasTensor has no value: it only describes the inputs of a "
                         "functional model. Build a Model(inputs, outputs) and call it on data.")

    def __array__(self, *a, **k):
        self.numpy()

    # Python's operators on symbolic tensors are keras.ops calls, recorded as op nodes of the graph
    # (as Keras's KerasTensor does: saved as Keras's Operations, loadable in safe mode)
    def __iter__(self):
        raise NotImplementedError("Iterating over a symbolic KerasTensor is not supported.")

    def __bool__(self):
        raise TypeError("A symbolic KerasTensor cannot be used as a boolean.")

    def __round__(self, ndigits=None):
        from .. import ops
        return ops.round(self, decimals=ndigits or 0)


def _binary(name, reverse=False):
    def method(self, other):
        from .. import ops
        fn = getattr(ops, name)
        return fn(other, self) if reverse else fn(self, other)
    method.__name__ = name
    return method


def _unary(name):
    def method(self):
        from .. import ops
        return getattr(ops, name)(self)
    method.__name__ = name
    return method


for _dunder, _name in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("matmul", "matmul"),
                       ("truediv", "true_divide"), ("div", "divide"), ("pow", "power"), ("floordiv", "floor_divide"),
                       ("mod", "mod"), ("and", "logical_and"), ("or", "logical_or"), ("xor", "logical_xor")):
    setattr(KerasTensor, f"__{_dunder}__", _binary(_name))
    setattr(KerasTensor, f"__r{_dunder}__", _binary(_name, reverse=True))
for _dunder, _name in (("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                       ("ne", "not_equal"), ("getitem", "get_item")):
    setattr(KerasTensor, f"__{_dunder}__", _binary(_name))
for _dunder, _name in (("neg", "negative"), ("abs", "absolute"), ("invert", "logical_not")):
    setattr(KerasTensor, f"__{_dunder}__", _unary(_name))


def _standardize(dtype):
    """A dtype name; "string" (or str) is accepted here, for symbolic string inputs."""
    if dtype is str or dtype == dtypes.STRING:
        return dtypes.STRING
    return dtypes.standardize(dtype)


class InputLayer(Layer):
    """The layer behind `Input`: it holds the model's input KerasTensor."""

    def __init__(self, shape=None, batch_size=None, dtype=None, input_tensor=None, name=None,
                 batch_shape=None, sparse=False, ragged=False, optional=False, **kwargs):
        if "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs:
            batch_shape = kwargs.pop("batch_input_shape")
        for arg, value in (("sparse", sparse), ("ragged", ragged), ("optional", optional)):
            if value:
                raise ValueError(f"InputLayer: {arg} inputs are not supported by lamina (received {arg}={value!r})")
        super().__init__(name=name, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError("Input: pass `shape` (without the batch dimension), e.g. Input(shape=(784,)), "
                                 "or `batch_shape`")
            if isinstance(shape, (int, np.integer)):
                shape = (int(shape),)
            batch_shape = (batch_size,) + tuple(shape)
        for d in batch_shape:
            if d is not None and (isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 0):
                raise ValueError(f"Input: dimensions must be non-negative integers or None, received {d!r} in the "
                                 f"batch shape {tuple(batch_shape)} (batch size first)")
        self._batch_input_shape = tuple(batch_shape)
        self.dtype = _standardize(dtype) if dtype is not None else "float32"
        self.built = True
        if input_tensor is not None:
            kt = input_tensor
        else:
            kt = KerasTensor(self._batch_input_shape, self.dtype, name=self.name)
        from .symbolic import Node
        Node(self, [], [kt], ((), {}))

    @property
    def batch_shape(self):
        return self._batch_input_shape

    def get_config(self):
        return {"batch_shape": self._batch_input_shape, "dtype": self.dtype, "sparse": False, "ragged": False,
                "name": self.name, "optional": False}


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, tensor=None, sparse=False):
    """A symbolic input for the functional API: `x = Input(shape=(28, 28, 1))`.

    dtype="string" declares an input of strings (fed as numpy arrays of str / bytes, shape
    `(batch,) + shape`), to be taken by a text preprocessing layer: TextVectorization,
    StringLookup or Hashing. Strings stay host data; other layers refuse them."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, batch_shape=batch_shape,
                       input_tensor=tensor, sparse=sparse)
    return layer._inbound_nodes[0].outputs[0]

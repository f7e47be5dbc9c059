"""Merging layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot, and
their functional forms (add, concatenate, ...).

Masks, as Keras's (keras/src/layers/merging/base_merge.py): the output mask of the elementwise
merges is the logical or of the inputs' masks (None unless every input has one); Concatenate's
is any(concatenation of the masks, each broadcast to its input's shape (an unmasked input counts
as all True), over the last axis); Dot's is None. Maximum and Minimum ignore masked steps of an
input (they take the other inputs' values there), Multiply treats them as 1 and zeroes the
positions every input masks, as Keras does; Add, Subtract and Average merge the values as they
are."""
from functools import reduce

import numpy as np

from .. import ops
from .layer import Layer


class _Merge(Layer):
    min_inputs = 2
    max_inputs = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        masks = self._mask_list(inputs, mask)
        if masks is None or any(m is None for m in masks):
            return None
        return reduce(ops.logical_or, [ops.cast(m, "bool") for m in masks])

    def _mask_list(self, inputs, mask):
        """The masks as a list with one entry per input, or None (no mask at all)."""
        if mask is None or (isinstance(mask, (list, tuple)) and all(m is None for m in mask)):
            return None
        who = f"{type(self).__name__} '{self.name}'"
        if not isinstance(mask, (list, tuple)):
            raise ValueError(f"{who}: `mask` should be a list with one entry (or None) per input, received a "
                             f"single mask of shape {getattr(mask, 'shape', None)}")
        if not isinstance(inputs, (list, tuple)) or len(mask) != len(inputs):
            n = len(inputs) if isinstance(inputs, (list, tuple)) else 1
            raise ValueError(f"{who}: the lists of inputs and masks should have the same length, received {n} "
                             f"inputs and {len(mask)} masks")
        return list(mask)

    def _expanded(self, m, x):
        """A (batch, ...) mask of x's shape without its last axis, broadcast to x's shape."""
        m = ops.cast(ops.convert_to_tensor(m), "bool")
        if tuple(m.shape) != tuple(x.shape[:-1]):
            raise ValueError(f"{type(self).__name__} '{self.name}': an input of shape {x.shape} has a mask of shape "
                             f"{m.shape}; a mask covers every axis of its input but the last (features): expected "
                             f"{tuple(x.shape[:-1])}")
        return ops.broadcast_to(ops.expand_dims(m, -1), x.shape)

    def _masked_fold(self, op, inputs, mask):
        """Keras's `_apply_merge_op_and_or_mask`: a masked position of an input takes the merged
        value of the inputs before it (and the other way round), so masked steps drop out."""
        masks = self._mask_list(inputs, mask) or [None] * len(inputs)
        output = output_mask = None
        for x, m in zip(inputs, masks):
            m = None if m is None else self._expanded(m, x)
            if output is None:
                output, output_mask = x, m
                continue
            if m is not None:
                x = ops.where(m, x, output)
            if output_mask is not None:
                output = ops.where(output_mask, output, x)
            output_mask = ops.logical_or(output_mask, m) if m is not None and output_mask is not None else None
            output = op(output, x)
        return output

    def _check(self, shapes):
        if not isinstance(shapes, (list, tuple)) or not shapes or not isinstance(shapes[0], (list, tuple)):
            raise ValueError(f"{type(self).__name__} '{self.name}' must be called on a list of inputs, received "
                             f"a single input of shape {shapes}")
        if len(shapes) < self.min_inputs:
            raise ValueError(f"{type(self).__name__} '{self.name}' needs at least {self.min_inputs} inputs, "
                             f"received {len(shapes)}")
        if self.max_inputs is not None and len(shapes) > self.max_inputs:
            raise ValueError(f"{type(self).__name__} '{self.name}' needs exactly {self.max_inputs} inputs, "
                             f"received {len(shapes)}")

    def build(self, input_shape):
        self._check(input_shape)
        self._broadcast(input_shape)

    def _broadcast(self, shapes):
        """The inputs' common shape by numpy broadcasting (aligned from the right; None: unknown);
        ValueError naming the layer and the shapes when they do not broadcast."""
        n = max(len(s) for s in shapes)
        out = []
        for i in range(n):
            dims = {s[i - n + len(s)] for s in shapes if i - n + len(s) >= 0}
            known = {d for d in dims if d is not None and d != 1}
            if len(known) > 1:
                raise ValueError(f"{type(self).__name__} '{self.name}': inputs must have compatible shapes (equal, "
                                 f"or 1, in each dimension aligned from the right), received {list(shapes)}")
            out.append(known.pop() if known else None if None in dims else 1)
        return tuple(out)

    def _check_inputs(self, inputs):
        """The checks of build, on every call (a built layer may be called on other shapes)."""
        shapes = [tuple(x.shape) for x in inputs] if isinstance(inputs, (list, tuple)) else inputs.shape
        self._check(shapes)
        self._broadcast(shapes)

    def call(self, inputs):
        self._check_inputs(inputs)
        return reduce(self._merge, inputs)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return self._broadcast(input_shape)


class Add(_Merge):
    _merge = staticmethod(ops.add)


class Subtract(_Merge):
    max_inputs = 2
    _merge = staticmethod(ops.subtract)


class Multiply(_Merge):
    _merge = staticmethod(ops.multiply)

    def call(self, inputs, mask=None):
        self._check_inputs(inputs)
        masks = self._mask_list(inputs, mask)
        if masks is None:
            return reduce(ops.multiply, inputs)
        every = all(m is not None for m in masks)   # Keras: masked positions count as 1, zeroed where all are
        output = output_mask = None
        for x, m in zip(inputs, masks):
            if m is not None:
                m = self._expanded(m, x)
                x = ops.where(m, x, 1.0)
                if every:
                    output_mask = m if output_mask is None else ops.logical_or(output_mask, m)
            output = x if output is None else ops.multiply(output, x)
        return ops.where(output_mask, output, 0.0) if every else output


class Maximum(_Merge):
    _merge = staticmethod(ops.maximum)

    def call(self, inputs, mask=None):
        self._check_inputs(inputs)
        return self._masked_fold(ops.maximum, inputs, mask)


class Minimum(_Merge):
    _merge = staticmethod(ops.minimum)

    def call(self, inputs, mask=None):
        self._check_inputs(inputs)
        return self._masked_fold(ops.minimum, inputs, mask)


class Average(_Merge):
    def call(self, inputs):
        self._check_inputs(inputs)
        return ops.divide(reduce(ops.add, inputs), float(len(inputs)))


class Concatenate(_Merge):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Concatenate: axis must be an integer, received axis={axis!r}")
        self.axis = int(axis)

    def build(self, input_shape):
        self._check_shapes(input_shape)

    def _check_shapes(self, input_shape):
        self._check(input_shape)
        nd = len(input_shape[0])
        if any(len(s) != nd for s in input_shape):
            raise ValueError(f"Concatenate '{self.name}': inputs must have the same rank, received {list(input_shape)}")
        if not -nd <= self.axis < nd:
            raise ValueError(f"Concatenate '{self.name}': axis={self.axis} is out of range for inputs of rank {nd} "
                             f"(shapes {list(input_shape)}); expected {-nd} <= axis <= {nd - 1}")
        ax = self.axis % nd
        for i in range(nd):
            dims = {s[i] for s in input_shape if s[i] is not None}
            if i != ax and len(dims) > 1:
                raise ValueError(f"Concatenate '{self.name}' requires inputs with matching shapes except for the "
                                 f"concatenation axis {self.axis}, received {list(input_shape)}")

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            self._check_shapes([tuple(x.shape) for x in inputs])
        return ops.concatenate(list(inputs), axis=self.axis)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        ax = self.axis % len(input_shape[0])
        out = list(input_shape[0])
        sizes = [s[ax] for s in input_shape]
        out[ax] = None if any(d is None for d in sizes) else sum(sizes)
        return tuple(out)

    def compute_mask(self, inputs, mask=None):
        masks = self._mask_list(inputs, mask)
        if masks is None:
            return None
        full = []
        for x, m in zip(inputs, masks):
            if m is None:
                full.append(ops.ones(x.shape, dtype="bool"))
                continue
            m = ops.cast(ops.convert_to_tensor(m), "bool")
            if m.ndim < x.ndim:
                m = ops.logical_or(ops.expand_dims(m, -1), ops.zeros(x.shape, dtype="bool"))
            full.append(m)
        return ops.any(ops.concatenate(full, axis=self.axis), axis=-1)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """Dot product of two samples along `axes` (batch_dot); normalize=True uses cosine similarity."""

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        if is_int(axes):
            self._axes_arg, self.axes = int(axes), (int(axes), int(axes))   # _axes_arg: as given, for get_config
        elif isinstance(axes, (list, tuple)) and len(axes) == 2 and all(is_int(a) for a in axes):
            self._axes_arg, self.axes = [int(a) for a in axes], (int(axes[0]), int(axes[1]))
        else:
            raise ValueError(f"Dot: axes must be an int or a pair of ints, received {axes!r}")
        self.normalize = bool(normalize)

    def build(self, input_shape):
        self._check(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f"Dot '{self.name}' needs exactly 2 inputs, received {len(input_shape)}")
        a, b = input_shape
        ax = self._axes_for(len(a), len(b), a, b)
        if a[ax[0]] is not None and b[ax[1]] is not None and a[ax[0]] != b[ax[1]]:
            raise ValueError(f"Dot '{self.name}': dimension {a[ax[0]]} (axis {ax[0]} of {a}) differs from "
                             f"{b[ax[1]]} (axis {ax[1]} of {b})")

    def _axes_for(self, rank_x, rank_y, shape_x, shape_y):
        """The two axes, non-negative; ValueError naming the layer when one is out of range."""
        out = []
        for i, (a, rank, shape) in enumerate(((self.axes[0], rank_x, shape_x), (self.axes[1], rank_y, shape_y))):
            if not -rank <= a < rank:
                raise ValueError(f"Dot '{self.name}': axes={self._axes_arg!r} is out of range for input {i} of shape "
                                 f"{tuple(shape)}; expected {-rank} <= axis <= {rank - 1}")
            out.append(a % rank)
        return out

    def call(self, inputs):
        x, y = inputs
        ax, ay = self._axes_for(x.ndim, y.ndim, x.shape, y.shape)
        if self.normalize:
            x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=ax, keepdims=True), 1e-12))
            y = y / ops.sqrt(ops.maximum(ops.sum(ops.square(y), axis=ay, keepdims=True), 1e-12))
        xm = ops.moveaxis(x, ax, -1)
        ym = ops.moveaxis(y, ay, 1)
        if x.ndim == 2 and y.ndim == 2:
            return ops.sum(ops.multiply(xm, ym), axis=-1, keepdims=True)
        xs, ys = xm.shape, ym.shape
        x3 = ops.reshape(xm, (xs[0], int(np.prod(xs[1:-1], dtype=np.int64)), xs[-1]))   # no -1: 0-size dims
        y3 = ops.reshape(ym, (ys[0], ys[1], int(np.prod(ys[2:], dtype=np.int64))))
        out = ops.matmul(x3, y3)
        return ops.reshape(out, xs[:-1] + ys[2:])

    def compute_output_shape(self, input_shape):
        a, b = input_shape
        ax, ay = self._axes_for(len(a), len(b), a, b)
        ra = [d for i, d in enumerate(a) if i != ax][1:]
        rb = [d for i, d in enumerate(b) if i != ay][1:]
        rest = tuple(ra + rb)
        return (a[0],) + (rest if rest else (1,))

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "axes": self._axes_arg, "normalize": self.normalize}


def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes, normalize=False, **kwargs):
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)

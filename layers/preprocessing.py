"""Preprocessing layers: Rescaling, Normalization, CategoryEncoding, Discretization (and, in
preprocessing_image.py and preprocessing_text.py, re-exported here: the image and the text /
lookup layers)."""
import itertools
import numbers

import numpy as np

from .. import ops
from ..backend import dtypes
from ..backend.device import device as device_scope
from ..backend.settings import epsilon
from ..backend.tensor import Tensor, convert_to_tensor
from .layer import InputSpec, Layer


def _factor(value, name):
    """A real number, or an array-like of real numbers (e.g. one per channel) -> (the value as
    get_config returns it, the operand used in call)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not np.isfinite(value):
            raise ValueError(f"Rescaling: `{name}` must be finite, received {name}={value!r}")
        return value, float(value)
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):
        a = None
    if a is None or a.dtype.kind not in "iuf" or a.size == 0:
        raise ValueError(f"Rescaling: `{name}` must be a number or a list/array of numbers (one per channel), "
                         f"received {name}={value!r}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"Rescaling: `{name}` must be finite, received {name}={value!r}")
    if a.ndim == 0:
        return a.item(), float(a)
    return a.tolist(), a.astype(np.float32)


class Rescaling(Layer):
    """y = x * scale + offset, in float32 (integer inputs are cast), like Keras's Rescaling.

    scale / offset: numbers, or arrays that broadcast against the input's trailing axes (a list
    of one value per channel for channels-last images). Rescaling(1 / 255) maps [0, 255] to
    [0, 1]; Rescaling(1 / 127.5, offset=-1) maps it to [-1, 1]."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self._scale = _factor(scale, "scale")
        self.offset, self._offset = _factor(offset, "offset")
        self.supports_masking = True

    def build(self, input_shape):
        shape = tuple(input_shape)
        for name, a in (("scale", self._scale), ("offset", self._offset)):
            s = np.shape(a)
            ok = len(s) <= len(shape) and all(d == 1 or i is None or d == i for d, i in zip(s[::-1], shape[::-1]))
            if not ok:
                raise ValueError(f"Rescaling '{self.name}': `{name}` of shape {s} does not broadcast against the "
                                 f"input of shape {shape}; give a number or one value per channel (the last axis)")

    def call(self, inputs):
        dt = self.dtype if dtypes.is_float(self.dtype) else dtypes.FLOAT32
        x = inputs if inputs.dtype == dt else ops.cast(inputs, dt)
        return ops.add(ops.multiply(x, self._scale), self._offset)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


# ---- Normalization ----------------------------------------------------------------------------------



def _axis_tuple(axis, who):
    if axis is None:
        return ()
    items = (axis,) if isinstance(axis, (int, np.integer)) and not isinstance(axis, (bool, np.bool_)) else axis
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or any(isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) for a in items):
        raise ValueError(f"{who}: `axis` must be an int, a tuple of ints or None, received axis={axis!r}")
    return tuple(int(a) for a in items)


def _statistic(value, name):
    a = np.asarray(value)
    if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
        raise ValueError(f"Normalization: `{name}` must be a finite number or array of numbers, received "
                         f"{name}={value!r}")
    return a


def _batch_of(batch):
    """x from an (x, y) or (x, y, sample_weight) batch."""
    return batch[0] if isinstance(batch, tuple) else batch


def _batches(data, who):
    """(the first batch's shape, an iterator over all the batches) for adapt's data: one array or
    tensor, or an iterable of batches (a PyDataset, a generator, a list of arrays)."""
    if isinstance(data, (np.ndarray, Tensor)):
        return tuple(data.shape), iter([data])
    if not hasattr(data, "__iter__") or isinstance(data, (str, bytes, dict)):
        raise TypeError(f"{who}.adapt: expected a numpy array, a tensor or an iterable of batches (a PyDataset, "
                        f"a generator, a list of arrays), received {type(data).__name__}")
    it = iter(data)
    first = next(it, None)
    if first is None:
        raise ValueError(f"{who}.adapt: the iterable of batches is empty; pass at least one batch, e.g. "
                         "layer.adapt(x) or layer.adapt([x1, x2])")
    first = _batch_of(first)
    if not hasattr(first, "shape"):
        raise TypeError(f"{who}.adapt: an iterable is read as batches, and each batch must be an array or tensor "
                        f"with a shape; the first is a {type(first).__name__}. To adapt on one batch held in a "
                        "list, pass np.asarray(data)")
    return tuple(first.shape), itertools.chain([first], (_batch_of(b) for b in it))


class Normalization(Layer):
    """Shifts and scales inputs to mean 0 and variance 1 per feature: (x - mean) / sqrt(variance)
    (the square root floored at 1e-7), like Keras's Normalization; with invert=True it undoes
    that: mean + x * sqrt(variance).

    axis: the axis or axes with a separate mean and variance per index (default -1, the
    features); None for one mean and variance over everything.
    mean / variance: given together, they broadcast over the kept axes (from the right);
    otherwise call `adapt(data)` before use, which stores them as the layer's (saved) weights
    `mean`, `variance` (and `count`, kept for Keras's file layout)."""

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = _axis_tuple(axis, "Normalization")
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: give both `mean` and `variance`, or neither (then call adapt()); "
                             f"received mean={mean!r}, variance={variance!r}")
        if mean is not None:
            m, v = _statistic(mean, "mean"), _statistic(variance, "variance")
            if m.shape != v.shape:
                raise ValueError(f"Normalization: `mean` and `variance` must have the same shape, received shapes "
                                 f"{m.shape} and {v.shape}")
            if m.ndim > len(self.axis):
                raise ValueError(f"Normalization: the rank of `mean` ({m.ndim}) must be at most the number of kept "
                                 f"axes ({len(self.axis)}, axis={self.axis})")
            if np.any(v < 0):
                raise ValueError(f"Normalization: `variance` must be >= 0, received variance={variance!r}")
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)
        self.supports_masking = True
        self._fixed = None   # (mean, variance) as float32 arrays of the broadcast shape, when given

    def build(self, input_shape):
        shape = tuple(input_shape)
        ndim = len(shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(f"Normalization '{self.name}': every axis must be in [-{ndim}, {ndim}) for inputs of "
                             f"rank {ndim}, received axis={self.axis} (input shape {shape})")
        self._keep_axis = tuple(sorted(a % ndim for a in self.axis))
        for d in self._keep_axis:
            if shape[d] is None:
                raise ValueError(f"Normalization '{self.name}': the kept axes must have known sizes; axis {d} of the "
                                 f"input shape {shape} is unknown (axis={self.axis}). Give the input a fixed size "
                                 "there, or normalize over it with a different `axis`")
        self._reduce_axis = tuple(d for d in range(ndim) if d not in self._keep_axis)
        self._broadcast_shape = tuple(shape[d] if d in self._keep_axis else 1 for d in range(ndim))
        self._stat_shape = tuple(shape[d] for d in self._keep_axis)
        self.input_spec = InputSpec(ndim=ndim, axes={d: shape[d] for d in self._keep_axis})
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(name="mean", shape=self._stat_shape, initializer="zeros",
                                              trainable=False)
            self.adapt_variance = self.add_weight(name="variance", shape=self._stat_shape, initializer="ones",
                                                  trainable=False)
            self.count = self.add_weight(name="count", shape=(), dtype="int64", initializer="zeros", trainable=False)
        else:
            fixed = []
            for a in (np.asarray(self.input_mean, np.float32), np.asarray(self.input_variance, np.float32)):
                expanded = [1] * ndim
                for i in range(1, a.ndim + 1):   # the statistic's dims go to the kept axes, from the right
                    expanded[self._keep_axis[-i]] = a.shape[-i]
                try:
                    fixed.append(np.broadcast_to(a.reshape(expanded), self._broadcast_shape).copy())
                except ValueError:
                    raise ValueError(f"Normalization '{self.name}': `mean`/`variance` of shape {a.shape} do not "
                                     f"broadcast to the kept axes {self._keep_axis} of the input shape {shape} "
                                     f"(sizes {self._stat_shape})") from None
            self._fixed = tuple(fixed)

    @property
    def mean(self):
        """Keras's `layer.mean`: the mean in use, as a tensor of the broadcast shape (1 on the
        normalized axes) in the compute dtype; None before the layer is built."""
        return self._statistic(0)

    @property
    def variance(self):
        """Keras's `layer.variance`, as `mean`."""
        return self._statistic(1)

    def _statistic(self, i):
        if not self.built:
            return None
        if self._fixed is not None:
            t = convert_to_tensor(self._fixed[i])
        else:
            t = ops.reshape(self.adapt_mean if i == 0 else self.adapt_variance, self._broadcast_shape)
        return t if t.dtype == self.compute_dtype else ops.cast(t, self.compute_dtype)

    def adapt(self, data):
        """Sets the mean and variance from `data`: a numpy array or tensor (one pass), or an
        iterable of batches (a PyDataset, a generator, a list of arrays; (x, y) batches use x),
        merged batch by batch as Keras does."""
        if self.input_mean is not None:
            raise ValueError(f"Normalization '{self.name}': it was given `mean` and `variance`; adapt() only "
                             "applies to a layer created without them")
        shape, batches = _batches(data, "Normalization")
        if not self.built:
            self._maybe_build(shape)
        else:
            for d in self._keep_axis:
                if d >= len(shape) or shape[d] != self._build_input_shape[d]:
                    raise ValueError(f"Normalization '{self.name}' was built for inputs of shape "
                                     f"{tuple(self._build_input_shape)}; adapt() received data of shape {shape}")
        total_mean = total_var = None
        total_count = 0
        dev = self.adapt_mean.device
        with device_scope(dev):
            for batch in batches:
                x = convert_to_tensor(batch, dtype=dtypes.FLOAT32)
                if x.device is not dev:
                    x = x.to(dev)
                if x.ndim != len(self._broadcast_shape) or any(x.shape[d] != self._broadcast_shape[d]
                                                               for d in self._keep_axis):
                    raise ValueError(f"Normalization '{self.name}'.adapt: a batch of shape {x.shape} does not match "
                                     f"the first one ({shape}) on the kept axes {self._keep_axis}")
                if self._reduce_axis:
                    mean, var = ops.mean(x, axis=self._reduce_axis), ops.var(x, axis=self._reduce_axis)
                    count = int(np.prod([x.shape[d] for d in self._reduce_axis]))
                else:
                    mean, var, count = x, ops.zeros_like(x), 1
                if count == 0:
                    continue
                if total_mean is None:
                    total_mean, total_var, total_count = mean, var, count
                    continue
                total_count += count
                w = count / total_count
                new_mean = ops.add(ops.multiply(total_mean, 1.0 - w), ops.multiply(mean, w))
                total_var = ops.add(ops.multiply(ops.add(total_var, ops.square(ops.subtract(total_mean, new_mean))),
                                                 1.0 - w),
                                    ops.multiply(ops.add(var, ops.square(ops.subtract(mean, new_mean))), w))
                total_mean = new_mean
        if total_mean is None:
            raise ValueError(f"Normalization '{self.name}'.adapt: the data holds no values (shape {shape})")
        self.adapt_mean.assign(total_mean)
        self.adapt_variance.assign(total_var)

    def call(self, inputs):
        with device_scope(inputs.device):
            return self._normalize(inputs)

    def _normalize(self, inputs):
        x = inputs if inputs.dtype == dtypes.FLOAT32 else ops.cast(inputs, dtypes.FLOAT32)
        if self._fixed is not None:
            mean, variance = self._fixed
        else:
            mean = ops.reshape(self.adapt_mean, self._broadcast_shape)
            variance = ops.reshape(self.adapt_variance, self._broadcast_shape)
        std = ops.maximum(ops.sqrt(variance), epsilon())
        if self.invert:
            return ops.add(mean, ops.multiply(x, std))
        return ops.divide(ops.subtract(x, mean), std)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_dtype(self, input_dtypes):
        return dtypes.FLOAT32

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "invert": self.invert,
                "mean": np.array(self.input_mean).tolist(), "variance": np.array(self.input_variance).tolist()}


# ---- categorical encodings (CategoryEncoding, Discretization, the lookups, Hashing) ------------------

_CHUNK = 1 << 24    # one-hot elements materialised at once by the multi_hot / count reductions


def encode_categorical(ids, output_mode, depth, count_weights=None):
    """Keras's encode_categorical_inputs on an int tensor of ids: "int" returns it; "one_hot"
    adds an axis of size `depth` (replacing a last axis of size 1); "multi_hot" / "count" reduce
    over axis 1 (axis 0 for 1-D ids) the presence / number (times `count_weights`) of each id.
    Ids outside [0, depth) encode as zeros. Outputs are float32."""
    if output_mode == "int":
        return ids
    if ids.ndim == 0:
        ids = ops.expand_dims(ids, -1)
        if count_weights is not None:
            count_weights = ops.expand_dims(count_weights, -1)
    if output_mode == "one_hot":
        if ids.ndim > 1 and ids.shape[-1] == 1:
            ids = ops.squeeze(ids, -1)
        return ops.one_hot(ids, depth)
    axis = 1 if ids.ndim > 1 else 0
    n = ids.shape[axis]
    out_shape = ids.shape[:axis] + ids.shape[axis + 1:] + (depth,)
    if n == 0:
        return ops.zeros(out_shape)
    step = max(1, _CHUNK // max(1, (ids.size // n) * depth))
    out = None
    for start in range(0, n, step):   # bounded memory: a few one-hot slabs, reduced as they come
        sl = (slice(None),) * axis + (slice(start, start + step),)
        oh = ops.one_hot(ids[sl], depth)
        if count_weights is not None:
            oh = ops.multiply(oh, ops.expand_dims(count_weights[sl], -1))
        part = ops.max(oh, axis=axis) if output_mode == "multi_hot" else ops.sum(oh, axis=axis)
        out = part if out is None else (ops.maximum(out, part) if output_mode == "multi_hot" else ops.add(out, part))
    return out


def categorical_output_shape(input_shape, output_mode, depth):
    """The output shape of encode_categorical for an input shape (Keras's rule)."""
    input_shape = tuple(input_shape)
    if output_mode == "int":
        return input_shape
    if not input_shape:
        return (depth,)
    if output_mode == "one_hot":
        if len(input_shape) > 1 and input_shape[-1] == 1:
            return input_shape[:-1] + (depth,)
        return input_shape + (depth,)
    return input_shape[:-1] + (depth,)


def _output_mode(who, value, allowed):
    if value == "binary":
        value = "multi_hot"
    if value not in allowed:
        raise ValueError(f"{who}: `output_mode` must be one of {allowed}, received output_mode={value!r}")
    return value


def _no_sparse(who, sparse):
    if sparse:
        raise ValueError(f"{who}: sparse=True is not supported: lamina has no sparse tensors. Use sparse=False "
                         "(the default) for a dense output")


def _int_ids(x):
    """x as an int tensor of ids (floats are truncated, as Keras casts them)."""
    if dtypes.is_int(x.dtype):
        return x
    if x.dtype == dtypes.BOOL:
        return ops.cast(x, dtypes.INT32)
    return ops.cast(x, dtypes.INT64)


class CategoryEncoding(Layer):
    """Encodes integer ids in [0, num_tokens) as dense vectors, like Keras's CategoryEncoding.

    output_mode: "multi_hot" (default; "binary" is an alias): per sample (the last axis of a
    2-D input, or the whole of a 1-D one), 1 where an id occurs; "count": how many times
    (times `count_weights` when the call passes them); "one_hot": one vector per id (a last
    axis of size 1 is replaced). Ids outside [0, num_tokens) raise a ValueError. Only dense
    outputs (sparse=False)."""

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, **kwargs):
        super().__init__(**kwargs)
        self.output_mode = _output_mode("CategoryEncoding", output_mode, ("count", "one_hot", "multi_hot"))
        if num_tokens is None:
            raise ValueError("CategoryEncoding: `num_tokens` must be set (the number of distinct ids). If it is "
                             "not known beforehand, use an IntegerLookup layer instead")
        if isinstance(num_tokens, (bool, np.bool_)) or not isinstance(num_tokens, (int, np.integer)) or \
                num_tokens < 1:
            raise ValueError(f"CategoryEncoding: `num_tokens` must be an integer >= 1, received "
                             f"num_tokens={num_tokens!r}")
        self.num_tokens = int(num_tokens)
        _no_sparse("CategoryEncoding", sparse)
        self.sparse = False

    def call(self, inputs, count_weights=None):
        with device_scope(inputs.device):
            return self._encode(inputs, count_weights)

    def _encode(self, inputs, count_weights):
        ids = _int_ids(inputs)
        if ids.size:
            lo, hi = int(ops.min(ids).item()), int(ops.max(ids).item())
            if lo < 0 or hi >= self.num_tokens:
                raise ValueError(f"CategoryEncoding '{self.name}': input ids must be in [0, {self.num_tokens}) "
                                 f"(num_tokens={self.num_tokens}), received ids from {lo} to {hi}. Raise "
                                 "num_tokens, or map the values to ids first (IntegerLookup)")
        if count_weights is not None:
            if self.output_mode != "count":
                raise ValueError(f"CategoryEncoding '{self.name}': `count_weights` only applies to "
                                 f"output_mode='count', received output_mode={self.output_mode!r}")
            count_weights = convert_to_tensor(count_weights, dtype=dtypes.FLOAT32)
            if count_weights.shape != ids.shape:
                raise ValueError(f"CategoryEncoding '{self.name}': `count_weights` must have the shape of the "
                                 f"inputs {ids.shape}, received shape {count_weights.shape}")
        return encode_categorical(ids, self.output_mode, self.num_tokens, count_weights)

    def compute_output_shape(self, input_shape):
        return categorical_output_shape(input_shape, self.output_mode, self.num_tokens)

    def compute_output_dtype(self, input_dtypes):
        return dtypes.FLOAT32

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens, "output_mode": self.output_mode}


# ---- Discretization -----------------------------------------------------------------------------------
# adapt's quantile sketch is Keras's (discretization.py: summarize / merge_summaries /
# compress_summary), so an adapted layer gets Keras's bin boundaries.

def _summarize(values, epsilon):
    values = np.sort(np.reshape(values, [-1]))
    step = max(np.size(values) / (1.0 / epsilon), 1)
    boundaries = values[int(step - 1)::int(step)]
    return np.stack([boundaries, np.ones_like(boundaries) * step])


def _compress_summary(summary, epsilon):
    if summary.shape[1] * epsilon < 1:
        return summary
    percents = epsilon + np.arange(0.0, 1.0, epsilon)
    cum_weights = summary[1].cumsum()
    cum_weight_percents = cum_weights / cum_weights[-1]
    new_bins = np.interp(percents, cum_weight_percents, summary[0])
    cum_weights = np.interp(percents, cum_weight_percents, cum_weights)
    new_weights = cum_weights - np.concatenate((np.array([0]), cum_weights[:-1]))
    return np.stack((new_bins, new_weights)).astype("float32")


def _merge_summaries(prev, nxt, epsilon):
    merged = np.concatenate((prev, nxt), axis=1)
    merged = np.take(merged, np.argsort(merged[0]), axis=1)
    return _compress_summary(merged, epsilon)


class Discretization(Layer):
    """Buckets numbers by boundaries, like Keras's Discretization: with bin_boundaries
    [b0, b1, ...], x < b0 -> 0, b0 <= x < b1 -> 1, ..., x >= b_last -> len(bin_boundaries)
    (NaN -> the last bucket, as jnp.digitize).

    bin_boundaries: sorted numbers; or num_bins, with the boundaries learnt by `adapt(data)`
    (approximate quantiles, Keras's sketch with error `epsilon`).
    output_mode: "int" (default; int32 bucket ids), "one_hot", "multi_hot" or "count" (float32,
    as CategoryEncoding encodes them)."""

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int", sparse=False, dtype=None,
                 name=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        who = "Discretization"
        self.output_mode = _output_mode(who, output_mode, ("int", "one_hot", "multi_hot", "count"))
        _no_sparse(who, sparse)
        self.sparse = False
        if num_bins is not None and (isinstance(num_bins, (bool, np.bool_)) or
                                     not isinstance(num_bins, (int, np.integer)) or num_bins < 0):
            raise ValueError(f"{who}: `num_bins` must be an integer >= 0, received num_bins={num_bins!r}")
        if num_bins is not None and bin_boundaries is not None:
            raise ValueError(f"{who}: set either `num_bins` (then adapt()) or `bin_boundaries`, not both; received "
                             f"num_bins={num_bins!r} and bin_boundaries={bin_boundaries!r}")
        if num_bins is None and bin_boundaries is None:
            raise ValueError(f"{who}: set either `bin_boundaries` or `num_bins` (then call adapt())")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) or not 0 < epsilon < 1:
            raise ValueError(f"{who}: `epsilon` must be a number in (0, 1), received epsilon={epsilon!r}")
        self.num_bins = None if num_bins is None else int(num_bins)
        self.epsilon = float(epsilon)
        self.bin_boundaries = None if bin_boundaries is None else self._boundaries(bin_boundaries)
        self.summary = None if self.bin_boundaries else np.array([[], []], dtype="float32")

    def _boundaries(self, value):
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            a = None
        if a is None or a.ndim != 1 or not np.all(np.isfinite(a)):
            raise ValueError(f"Discretization: `bin_boundaries` must be a 1-D list of finite numbers, received "
                             f"bin_boundaries={value!r}")
        if np.any(np.diff(a) < 0):
            raise ValueError(f"Discretization: `bin_boundaries` must be sorted in increasing order, received "
                             f"bin_boundaries={value!r}")
        return [float(v) for v in a]

    def adapt(self, data, steps=None):
        """Learns `num_bins - 1` boundaries (approximate quantiles) from `data`: an array or
        tensor, or an iterable of batches (at most `steps` of them)."""
        if self.num_bins is None:
            raise ValueError(f"Discretization '{self.name}' was created with `bin_boundaries`; adapt() needs a "
                             "layer created with `num_bins`")
        self.summary = np.array([[], []], dtype="float32")
        if isinstance(data, (np.ndarray, Tensor)) or not hasattr(data, "__iter__"):
            batches = [data]
        else:
            batches = data
        for i, batch in enumerate(batches):
            if steps is not None and i >= steps:
                break
            values = np.asarray(batch.numpy() if isinstance(batch, Tensor) else batch)
            if values.dtype.kind not in "iufb":
                raise TypeError(f"Discretization '{self.name}'.adapt: expected numbers, received an array of dtype "
                                f"{values.dtype}")
            self.summary = _merge_summaries(_summarize(values.astype("float32"), self.epsilon), self.summary,
                                            self.epsilon)
        self.bin_boundaries = _compress_summary(self.summary, 1.0 / self.num_bins)[0, :-1].tolist()

    def _depth(self):
        return len(self.bin_boundaries) + 1 if self.bin_boundaries is not None else self.num_bins

    def call(self, inputs):
        if self.bin_boundaries is None:
            raise ValueError(f"Discretization '{self.name}' has no bin boundaries yet: pass `bin_boundaries` when "
                             "creating it, or call adapt(data) before using it")
        with device_scope(inputs.device):
            return self._bucketize(inputs)

    def _bucketize(self, inputs):
        x = inputs if inputs.dtype == dtypes.FLOAT32 else ops.cast(inputs, dtypes.FLOAT32)
        if self.bin_boundaries:
            b = np.asarray(self.bin_boundaries, np.float32)
            ids = ops.sum(ops.cast(ops.greater_equal(ops.expand_dims(x, -1), b), dtypes.INT32), axis=-1)
            ids = ops.where(ops.isnan(x), len(self.bin_boundaries), ids)
        else:
            ids = ops.zeros(x.shape, dtype=dtypes.INT32)
        ids = ops.cast(ids, dtypes.INT32)
        return encode_categorical(ids, self.output_mode, self._depth())

    def compute_output_shape(self, input_shape):
        return categorical_output_shape(input_shape, self.output_mode, self._depth())

    def compute_output_dtype(self, input_dtypes):
        return dtypes.INT32 if self.output_mode == "int" else dtypes.FLOAT32

    def get_config(self):
        return {"bin_boundaries": self.bin_boundaries, "num_bins": self.num_bins, "epsilon": self.epsilon,
                "output_mode": self.output_mode, "sparse": self.sparse, "name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("bin_boundaries") is not None and config.get("num_bins") is not None:
            boundaries = config.pop("bin_boundaries")   # an adapted layer: num_bins and its boundaries
            layer = cls(**config)
            layer.bin_boundaries = layer._boundaries(boundaries)
            return layer
        return cls(**config)


# The image and text layers live in their own modules; they are reachable from here too.
_IMAGE = ("Resizing", "CenterCrop", "RandomCrop", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
          "RandomContrast")
_TEXT = ("TextVectorization", "StringLookup", "IntegerLookup", "Hashing")


def __getattr__(name):
    if name in _IMAGE:
        from . import preprocessing_image
        return getattr(preprocessing_image, name)
    if name in _TEXT:
        from . import preprocessing_text
        return getattr(preprocessing_text, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

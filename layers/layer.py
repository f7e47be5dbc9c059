"""The Layer base class: Keras's contract.

`__init__` validates arguments; `build(input_shape)` creates weights with `add_weight`; `call`
does the maths with ops; `get_config()` returns what `__init__` takes. `__call__` builds on
first use, checks inputs against `input_spec`, places the layer's work on its device, resolves
the `training` flag, and, for symbolic inputs (`lamina.Input`), records a node of the
functional graph instead of computing.
"""
import functools
import inspect
import re
import threading
import types

import numpy as np

from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import metrics as _metrics
from .. import regularizers as _regularizers
from .._traceback import filter_traceback_of
from ..backend import dtypes
from ..backend.device import current_device, device as device_scope, _scope as _device_scope
from ..backend.device import get_log_device_placement, log_placement
from ..backend.device import BF16_STATE as _bf16  # enabled: layers look at dtypes in __call__ only then
from ..backend.naming import get_uid, reset_names, unique_name  # noqa: F401 (re-exported)
from ..backend.tensor import Tensor, Variable, convert_to_tensor
from .tracking import TrackedDict, TrackedList

# ---- names -----------------------------------------------------------------------------------

def to_snake_case(name):
    """Keras's rule: Dense -> dense, Conv2D -> conv2d, MaxPooling2D -> max_pooling2d."""
    s = re.sub(r"\W+", "", name)
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", s)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


# ---- call context (training flag) ------------------------------------------------------------

def name_scope(layer):
    """A context in which the weights created (by `layer` and the layers it builds) get paths
    under `layer`'s name: a no-op when that name is already the innermost scope (inside
    `_maybe_build`)."""
    return _NameScope(layer.name)


class _NameScope:
    def __init__(self, name):
        self.name, self.pushed = name, False

    def __enter__(self):
        self.pushed = not (_ctx.scope and _ctx.scope[-1] == self.name)
        if self.pushed:
            _ctx.scope.append(self.name)

    def __exit__(self, *exc):
        if self.pushed:
            _ctx.scope.pop()


class _CallContext(threading.local):
    def __init__(self):
        self.training = None
        self.scope = []  # names of the layers being built, outermost first (weight paths)
        self.entry = None  # the layer whose __call__ is outermost (it clears the losses of the last call)


_ctx = _CallContext()
# Attributes set on any layer so far: a model's call replay (models/replay.py) records again
# when it changes (a layer's activation reassigned, a layer added, a model quantized).
_mutations = 0
_UNSET = object()
# Losses added by any layer so far: a replayed model call (which adds none) clears the losses an
# earlier call left, as the eager call would, when this has changed.
_loss_adds = 0


class InputSpec:
    """What a layer accepts, as Keras's InputSpec: `ndim`, `min_ndim`, `max_ndim`, `dtype`, `axes`
    {axis: size}, `shape`; `allow_last_axis_squeeze` lets a trailing axis of size 1 come or go
    (the rank is then not checked, and shapes compare without it); `optional` lets the input be
    None."""

    def __init__(self, dtype=None, shape=None, ndim=None, max_ndim=None, min_ndim=None, axes=None,
                 allow_last_axis_squeeze=False, name=None, optional=False):
        from ..backend.dtypes import standardize_dtype
        self.dtype = standardize_dtype(dtype) if dtype is not None else None
        self.shape = tuple(shape) if shape is not None else None
        self.ndim = len(self.shape) if self.shape is not None else ndim
        self.max_ndim, self.min_ndim = max_ndim, min_ndim
        self.axes = dict(axes or {})
        self.allow_last_axis_squeeze = bool(allow_last_axis_squeeze)
        self.name = name
        self.optional = bool(optional)

    def __repr__(self):
        parts = [f"{k}={v}" for k, v in (("ndim", self.ndim), ("min_ndim", self.min_ndim),
                                         ("max_ndim", self.max_ndim), ("axes", self.axes or None),
                                         ("shape", self.shape)) if v is not None]
        return f"InputSpec({', '.join(parts)})"


def _shape_str(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_input_spec(layer, spec, shape, dtype=None):
    """Raises ValueError naming the layer, the expected and the received shape (and dtype, when
    given). `shape` None stands for a None input, which only an optional spec accepts."""
    if spec is None:
        return
    where = f"Input to layer '{layer.name}' ({type(layer).__name__}) is incompatible with the layer"
    if shape is None:
        if spec.optional:
            return
        raise ValueError(f"{where}: expected a tensor, received None (the layer's InputSpec is not optional)")
    nd = len(shape)
    if dtype is not None and spec.dtype is not None and dtype != spec.dtype:
        raise ValueError(f"{where}: expected dtype={spec.dtype}, found dtype={dtype}. Cast the input, e.g. with "
                         f"ops.cast(x, {spec.dtype!r})")
    if spec.ndim is not None and nd != spec.ndim and not spec.allow_last_axis_squeeze:
        raise ValueError(f"{where}: expected ndim={spec.ndim}, found ndim={nd}. Full shape received: "
                         f"{_shape_str(shape)}. Hint: reshape the input (e.g. with a Reshape/Flatten layer) "
                         f"or check the model's input shape.")
    if spec.min_ndim is not None and nd < spec.min_ndim:
        raise ValueError(f"{where}: expected min_ndim={spec.min_ndim}, found ndim={nd}. Full shape received: "
                         f"{_shape_str(shape)}")
    if spec.max_ndim is not None and nd > spec.max_ndim:
        raise ValueError(f"{where}: expected max_ndim={spec.max_ndim}, found ndim={nd}. Full shape received: "
                         f"{_shape_str(shape)}")
    for axis, size in spec.axes.items():
        a = axis if axis >= 0 else nd + axis
        if size is not None and 0 <= a < nd and shape[a] is not None and shape[a] != size:
            raise ValueError(f"{where}: expected axis {axis} of the input shape to have value {size}, "
                             f"but received input with shape {_shape_str(shape)}")
    if spec.shape is not None:
        want_shape, got_shape = tuple(spec.shape), tuple(shape)
        if spec.allow_last_axis_squeeze:
            want_shape = want_shape[:-1] if want_shape and want_shape[-1] == 1 else want_shape
            got_shape = got_shape[:-1] if got_shape and got_shape[-1] == 1 else got_shape
        for want, got in zip(want_shape, got_shape):
            if want is not None and got is not None and want != got:
                raise ValueError(f"{where}: expected shape {_shape_str(spec.shape)}, found shape {_shape_str(shape)}")


def layer_dtype(dtype, who):
    """A layer's DTypePolicy from Keras's forms: None (the global policy), a dtype name, a policy
    name ("float32", "mixed_bfloat16", ...), a DTypePolicy-like object (`.name`) or its config
    dict ({"class_name": "DTypePolicy", "config": {"name": ...}}). A policy lamina does not have
    ("mixed_float16", "float64") is a ValueError saying what to use, not a silent float32."""
    from .. import dtype_policies
    try:
        return dtype_policies.get(dtype, who)
    except TypeError as e:
        raise ValueError(f"{who}: unrecognized dtype {dtype!r}; expected a dtype name such as 'float32' or "
                         f"'int32', or a DTypePolicy ({e})") from None


def _autocast_weights(layer, dtype, undo, casts):
    """Inside a mixed precision layer's call: its float32 weights (those created trainable, with
    autocast=True) and its sub-layers' of the same policy read as `dtype` copies. The attributes holding them
    (alone or in a list / tuple) are set to the copies, and `undo` collects (layer, name, value)
    to put back after the call; `casts` (id(weight) -> copy) casts a shared weight once."""
    from ..backend.math import cast
    pol = layer._dtype_policy
    if layer.autocast and pol.compute_dtype == dtype and pol.variable_dtype != dtype:
        frozen = layer._always_frozen

        def swap(v):
            if isinstance(v, Variable) and v._autocast and v.dtype in dtypes.FLOATS and v.dtype != dtype \
                    and id(v) not in frozen:  # not state (created non-trainable: statistics, RNN states)
                c = casts.get(id(v))
                if c is None:
                    c = casts[id(v)] = cast(v, dtype)
                return c
            return v
        for key, value in list(layer.__dict__.items()):
            if isinstance(value, Variable):
                new = swap(value)
            elif isinstance(value, (list, tuple)) and value and any(isinstance(v, Variable) for v in value):
                new = type(value)(swap(v) for v in value)
            else:
                continue
            if new is not value:
                undo.append((layer, key, value))
                object.__setattr__(layer, key, new)
    for sub in layer._layers:
        if sub is not layer:
            _autocast_weights(sub, dtype, undo, casts)


def _cast_float(t, dtype):
    """A layer's float output in its compute dtype (a mixed precision layer whose ops computed in
    float32, as normalization does, gives its compute dtype as Keras's layers do)."""
    if isinstance(t, Tensor) and t.dtype != dtype and t.dtype in dtypes.FLOATS:
        from ..backend.math import cast
        mask = t._keras_mask
        t = cast(t, dtype)
        t._keras_mask = mask
        return t
    return t


# ---- structure helpers ---------------------------------------------------------------------------

def flatten(x):
    if isinstance(x, dict):
        return [t for k in x for t in flatten(x[k])]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in flatten(v)]
    return [x]


def map_structure(fn, x):
    if isinstance(x, dict):
        return {k: map_structure(fn, v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(map_structure(fn, v) for v in x)
    return fn(x)


def shape_of(x):
    return tuple(x.shape)


# ---- tracked containers (layers/tracking.py) ---------------------------------------------------

# the layer's own bookkeeping lists: never wrapped
_UNTRACKED_CONTAINERS = frozenset(("_layers", "_own_weights", "_metrics", "_losses", "_inbound_nodes",
                                   "_regularizers"))


def _values(container):
    return container.values() if isinstance(container, dict) else container


# ---- Layer -------------------------------------------------------------------------------------

class Layer:
    """Base class of all layers (see the module docstring for the contract)."""

    _tracks_metrics = False  # whether any layer has a Metric attribute (see __setattr__)
    # whether __call__ casts float inputs and outputs to the compute dtype (when bfloat16 is in use);
    # models do not (as Keras's): each of their layers casts for itself
    _autocasts_io = True
    # whether a layer of an integer dtype casts float inputs to it (Keras's convert_input); the
    # hashing layers, which hash the values they are given, do not
    _casts_int_inputs = True
    # Keras's flag for layers XLA can compile (False on its lookup, hashing and random-geometry
    # layers); lamina has no XLA and only reports it (Model.jit_compile resolves "auto" with it)
    supports_jit = True
    quantization_mode = None  # "int8" once quantized (layers/quantization.py)

    def __init_subclass__(cls, **kwargs):
        """A subclass's `build` leaves the layer built when it returns, also when it is called
        directly (`layer.build(shape)`), as Keras's build wrapper does."""
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if isinstance(build, types.FunctionType) and not getattr(build, "_sets_built", False):
            @functools.wraps(build)
            def build_and_mark(self, *args, **kw):
                out = build(self, *args, **kw)
                self.built = True
                return out
            build_and_mark._sets_built = True
            cls.build = build_and_mark

    def __init__(self, *, activity_regularizer=None, trainable=True, dtype=None, autocast=True, name=None, **kwargs):
        input_shape = kwargs.pop("input_shape", None)
        batch_input_shape = kwargs.pop("batch_input_shape", None)
        input_dim = kwargs.pop("input_dim", None)
        batch_size = kwargs.pop("batch_size", None)
        kwargs.pop("input_length", None)  # accepted for Keras 2 scripts (Embedding)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unrecognized keyword argument(s) {sorted(kwargs)}. "
                            "Check the spelling against the layer's documented arguments.")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, received {name!r}")
        self._init_trackers()
        self.name = name if name else unique_name(to_snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        from . import quantization as _quantization
        if _quantization.is_quantized_policy(dtype):  # a quantized layer's config: quantized once built
            self._pending_quantization = _quantization.check_policy(dtype, type(self).__name__)
            dtype = _quantization.policy_source(dtype)  # the float policy it was quantized from (None: global)
        self._dtype_policy = layer_dtype(dtype, type(self).__name__)
        if not isinstance(autocast, bool):
            raise TypeError(f"{type(self).__name__}: autocast must be True or False, received {autocast!r}")
        self.autocast = autocast  # cast float inputs (and weights, under a mixed policy) to the compute dtype
        self.built = False
        self.input_spec = None
        self.supports_masking = False
        self.activity_regularizer = _regularizers.get(activity_regularizer)
        self._losses = []
        self._inbound_nodes = []
        self._device = current_device() if _device_scope.stack else None
        if batch_input_shape is not None:
            self._batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self._batch_input_shape = (batch_size,) + tuple(input_shape)
        elif input_dim is not None:
            self._batch_input_shape = (batch_size, int(input_dim))
        else:
            self._batch_input_shape = None
        params = inspect.signature(self.call).parameters
        self._call_has_training = "training" in params
        self._call_has_mask = "mask" in params
        self._build_overridden = type(self).build is not Layer.build

    # -- dtype policy (Keras's): weights in `variable_dtype`, computation in `compute_dtype` --
    @property
    def dtype_policy(self):
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, value):
        policy = layer_dtype(value, type(self).__name__)
        mode = getattr(policy, "quantization_mode", None)
        if mode is not None and self.quantization_mode is None:
            # Keras: a quantized policy quantizes the layer (now if built, else once built)
            self._dtype_policy = layer_dtype(policy.source_name, type(self).__name__)
            mode = policy.get_config().get("mode", mode)   # "int4/64": the block size too
            if self.built:
                self.quantize(mode)
            else:
                self._pending_quantization = mode
            return
        self._dtype_policy = policy

    @property
    def dtype(self):
        """The dtype of the layer's weights (Keras 3: `variable_dtype`)."""
        return self._dtype_policy.variable_dtype

    @dtype.setter
    def dtype(self, value):
        self._dtype_policy = layer_dtype(value, type(self).__name__)

    @property
    def compute_dtype(self):
        return self._dtype_policy.compute_dtype

    @property
    def variable_dtype(self):
        return self._dtype_policy.variable_dtype

    @property
    def input_dtype(self):
        """The dtype float inputs are cast to (with autocast): the compute dtype."""
        return self._dtype_policy.compute_dtype

    # -- attribute tracking: sub-layers and variables assigned as attributes are tracked --
    def _init_trackers(self):
        """The lists attribute tracking fills, made once: by __init__, or earlier by __setattr__ when
        a subclass assigns sub-layers before calling super().__init__() (Keras allows it)."""
        if "_layers" in self.__dict__:
            return
        object.__setattr__(self, "_layers", [])
        object.__setattr__(self, "_own_weights", [])
        object.__setattr__(self, "_always_frozen", set())  # ids of weights created with trainable=False
        object.__setattr__(self, "_metrics", [])  # Metric objects assigned as attributes (model.metrics)

    def __setattr__(self, key, value):
        global _mutations
        if "_layers" not in self.__dict__:
            self._init_trackers()
        if self.__dict__.get(key, _UNSET) is not value:  # (a cell resetting its dropout masks to None: no change)
            _mutations += 1
        if type(value) in (list, dict) and key not in _UNTRACKED_CONTAINERS and \
                all(isinstance(v, (Layer, Variable, _metrics.Metric)) for v in _values(value)):
            # Keras's TrackedList/TrackedDict: what is appended or set later is tracked as well
            value = (TrackedList if type(value) is list else TrackedDict)(self, value)
        if isinstance(value, Layer) and key != "_outer":
            self._track(value)
        elif isinstance(value, (list, tuple, dict)) and value and \
                all(isinstance(v, (Layer, Variable, _metrics.Metric)) for v in _values(value)):
            for v in _values(value):
                self._track(v)
        elif isinstance(value, (Variable, _metrics.Metric)):
            self._track(value)
        object.__setattr__(self, key, value)

    def _track(self, value):
        """Adds a sub-layer, variable or metric to what the layer tracks (once)."""
        if isinstance(value, Layer):
            if value is not self and value not in self._layers:
                self._layers.append(value)
        elif isinstance(value, Variable):
            if not any(value is w for w in self._own_weights):
                self._own_weights.append(value)
        elif isinstance(value, _metrics.Metric) and not any(value is m for m in self._metrics):
            self._metrics.append(value)
            Layer._tracks_metrics = True  # from now on model.metrics looks for them in the layers

    def _untrack(self, value):
        for store in (self._layers, self._own_weights, self._metrics):
            for i, v in enumerate(store):
                if v is value:
                    del store[i]
                    return

    # -- weights --
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True, autocast=True, regularizer=None,
                   constraint=None, name=None, **kwargs):
        """Creates a Variable owned by this layer (Keras's `add_weight`). In `dtype` (default: the
        policy's variable dtype); `autocast=False` keeps it in that dtype inside a mixed precision
        layer's call (as normalization statistics are)."""
        shape = tuple(int(d) for d in (shape or ()))
        dt = dtypes.standardize(dtype or self.dtype)
        if initializer is None:
            initializer = "glorot_uniform" if dtypes.is_float(dt) else "zeros"
        init = _initializers.get(initializer)
        name = name or unique_name("variable")   # Keras's: one global count ('variable', 'variable_1', ...)
        dev = self._device or current_device()
        with device_scope(dev):
            value = init(shape, dtype=dt)
            v = Variable(value, dtype=dt, trainable=trainable, name=name)
        v._autocast = bool(autocast)
        scope = _ctx.scope if _ctx.scope and _ctx.scope[-1] == self.name else [self.name]
        v._path = "/".join(scope + [name])
        if not trainable:
            self._always_frozen.add(id(v))
        if not self._trainable:
            v.trainable = False
        self._own_weights.append(v)
        reg = _regularizers.get(regularizer)
        if reg is not None:
            self._regularizers = getattr(self, "_regularizers", []) + [(v, reg)]
        v.constraint = _constraints.get(constraint)
        return v

    def _all_layers(self):
        out = []
        for l in self._layers:
            out.append(l)
            out.extend(l._all_layers())
        return out

    @property
    def weights(self):
        seen, out = set(), []
        for w in self._own_weights + [w for l in self._layers for w in l.weights]:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        return out

    @property
    def variables(self):
        return self.weights

    @property
    def trainable_weights(self):
        if not self._trainable:
            return []
        return _dedupe([w for w in self._own_weights if w.trainable] +
                       [w for l in self._layers for w in l.trainable_weights])

    @property
    def non_trainable_weights(self):
        tw = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in tw]

    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Takes effect at once, for this layer and every layer inside it."""
        value = bool(value)
        self._trainable = value
        for w in self._own_weights:
            w.trainable = value and id(w) not in self._always_frozen
        for l in self._layers:
            l.trainable = value

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"Layer '{self.name}': set_weights expected {len(own)} arrays "
                             f"({[w.path for w in own]}), received {len(weights)}")
        for v, a in zip(own, weights):
            a = np.asarray(a)
            if tuple(a.shape) != v.shape:
                raise ValueError(f"Layer '{self.name}': weight '{v.path}' has shape {v.shape}, "
                                 f"the value given has shape {tuple(a.shape)}")
        for v, a in zip(own, weights):
            v.assign(np.asarray(a))

    def count_params(self):
        if not self.built:
            raise ValueError(f"Layer '{self.name}' has not been built yet, so it has no weights to count. "
                             "Call it on an input or call build(input_shape) first.")
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    # -- losses and metrics --
    @property
    def losses(self):
        """The losses added (`add_loss`, activity regularizers) during the last outermost call,
        by this layer and the layers inside it, then the weight regularization penalties."""
        out = list(self._losses)
        for v, reg in getattr(self, "_regularizers", []):
            out.append(reg(v))
        for l in self._layers:
            out.extend(l.losses)
        return out

    def add_loss(self, loss):
        """Adds scalar loss(es) to this call's losses; from `call`, e.g.
        `self.add_loss(self.rate * ops.mean(inputs))`. They are cleared at the start of the next
        outermost call, so `losses` always holds one call's worth, as in Keras."""
        global _loss_adds
        _loss_adds += 1
        self._losses.extend(flatten(loss))

    def _clear_losses(self):
        if self._losses:
            self._losses.clear()
        for l in self._layers:
            l._clear_losses()

    @property
    def metrics(self):
        """Metric objects assigned as attributes of this layer and the layers inside it."""
        out = list(self._metrics)
        for l in self._layers:
            out.extend(l.metrics)
        return out

    # -- build / call --
    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs, *args, **kwargs):
        return inputs

    def _maybe_build(self, input_shape):
        if self.built:
            return
        dev = self._device
        _ctx.scope.append(self.name)
        self._build_input_shape = input_shape
        try:
            if dev is not None:
                with device_scope(dev):
                    self.build(input_shape)
            else:
                self.build(input_shape)
        finally:
            _ctx.scope.pop()
        self.built = True
        if dev is None and self._own_weights:  # a layer runs where its weights are
            self._device = self._own_weights[0].device
        pending = getattr(self, "_pending_quantization", None)
        if pending is not None:  # made from a quantized config: its weights are loaded next
            del self._pending_quantization
            self.quantize(pending)

    def quantize(self, mode, type_check=True, config=None):
        """Quantizes this built layer for inference (Keras 3): mode "int8" for Dense, EinsumDense,
        Conv2D, DepthwiseConv2D and Embedding, "int4" for Dense, EinsumDense and Embedding (see
        layers/quantization.py). Its dtype_policy becomes Keras's quantized policy
        ("int8_from_<its policy>", "int4/128_from_<its policy>")."""
        from .quantization import quantize_layer
        if config is not None:
            raise ValueError(f"{type(self).__name__} '{self.name}'.quantize: quantization configs (GPTQ, AWQ) are not "
                             "supported; use quantize('int8') or quantize('int4')")
        quantize_layer(self, mode)

    def build_from_shape(self, input_shape):
        self._maybe_build(input_shape)

    def __call__(self, *args, **kwargs):
        if not args:
            raise TypeError(f"Layer '{self.name}' was called without inputs")
        inputs = args[0]
        if self._device is None and not self.built and _device_scope.stack:
            self._device = current_device()  # first called inside `with lamina.device(d):`
        if not isinstance(inputs, Tensor):
            from .input_layer import KerasTensor
            if any(isinstance(t, KerasTensor) for t in flatten(inputs)):
                from .symbolic import symbolic_call
                try:
                    return symbolic_call(self, *args, **kwargs)
                except Exception as e:
                    raise filter_traceback_of(e)
        if _ctx.entry is not None:
            return self._eager_call(inputs, args, kwargs)
        _ctx.entry = self  # the outermost call: losses are collected afresh
        self._clear_losses()
        try:
            return self._eager_call(inputs, args, kwargs)
        except Exception as e:
            raise filter_traceback_of(e)   # the user's frames only (lamina.config.disable_traceback_filtering)
        finally:
            _ctx.entry = None

    def _takes_strings(self):
        """Whether this layer takes string inputs (numpy arrays of str; symbolic: dtype "string").
        Text preprocessing layers and models with string inputs say yes; the others refuse them
        with an error naming the layer."""
        return False

    def _eager_call(self, inputs, args, kwargs):
        if not isinstance(inputs, Tensor):
            inputs = self._convert_inputs(inputs)
        if self._device is not None:
            dev = self._device
            inputs = map_structure(lambda t: _move(t, dev) if isinstance(t, Tensor) else t, inputs)
        flat = [inputs] if isinstance(inputs, Tensor) else flatten(inputs)
        if not self.built:
            self._maybe_build(map_structure(shape_of, inputs))
        if self.input_spec is not None:
            specs = self.input_spec if isinstance(self.input_spec, (list, tuple)) else [self.input_spec]
            for spec, t in zip(specs, flat):
                check_input_spec(self, spec, None if t is None else t.shape, getattr(t, "dtype", None))
        if self._call_has_training:
            training = kwargs.get("training")
            if training is None:
                training = _ctx.training
            kwargs["training"] = training
        else:
            training = _ctx.training
            kwargs.pop("training", None)
        input_mask = kwargs.get("mask")
        if input_mask is None:
            if isinstance(inputs, Tensor):
                input_mask = inputs._keras_mask
            else:
                masks = [getattr(t, "_keras_mask", None) for t in flat]
                if any(m is not None for m in masks):
                    input_mask = masks[0] if not isinstance(inputs, (list, tuple, dict)) else masks
        if self._device is not None and input_mask is not None:
            input_mask = map_structure(lambda m: _move(m, self._device) if isinstance(m, Tensor) else m, input_mask)
        if self._call_has_mask:
            kwargs["mask"] = input_mask
        else:
            kwargs.pop("mask", None)
        prev = _ctx.training
        _ctx.training = training
        if get_log_device_placement():
            first = next((t for t in flat if isinstance(t, Tensor)), None)
            log_placement(self, self._device or (first.device if first is not None else current_device()))
        undo = None
        rest = args[1:]
        if _bf16.enabled and self.autocast:  # bfloat16 in use: float inputs in the compute dtype, mixed weights too
            pol = self._dtype_policy
            cdt = pol.compute_dtype
            if cdt in dtypes.FLOATS:
                if self._autocasts_io:
                    inputs = map_structure(lambda t: pol.convert_input(t, True, cdt), inputs)
                    rest = tuple(map_structure(lambda t: pol.convert_input(t, True, cdt), a) for a in rest)
                if pol.is_mixed:
                    undo = []
                    _autocast_weights(self, cdt, undo, {})
        if self.autocast and self._casts_int_inputs:
            cdt = self._dtype_policy.compute_dtype
            if cdt not in dtypes.FLOATS and cdt != dtypes.STRING:  # an integer layer: float inputs cast (Keras)
                pol = self._dtype_policy
                inputs = map_structure(lambda t: pol.convert_input(t, True, cdt), inputs)
        try:
            if self._device is not None and self._device is not current_device():
                with device_scope(self._device):
                    out = self.call(inputs, *rest, **kwargs)
            else:
                out = self.call(inputs, *rest, **kwargs)
        finally:
            _ctx.training = prev
            if undo:
                for layer, key, value in reversed(undo):
                    object.__setattr__(layer, key, value)
        if _bf16.enabled and self.autocast and self._autocasts_io and self._dtype_policy.compute_dtype in dtypes.FLOATS:
            cdt = self._dtype_policy.compute_dtype
            out = map_structure(lambda t: _cast_float(t, cdt), out)
        if self.activity_regularizer is not None:
            for o in flatten(out):
                loss = self.activity_regularizer(o)
                self.add_loss(loss / o.shape[0] if o.ndim and o.shape[0] else loss)  # per sample, as Keras 3
        if input_mask is not None or type(self).compute_mask is not Layer.compute_mask:
            out_mask = self.compute_mask(inputs, input_mask)
            if out_mask is not None:
                outs = flatten(out)
                omasks = out_mask if isinstance(out_mask, (list, tuple)) else [out_mask] * len(outs)
                for o, m in zip(outs, omasks):
                    if isinstance(o, Tensor):
                        o._keras_mask = m
        return out

    def _convert_inputs(self, inputs):
        """Non-tensor inputs as tensors (a nested list of numbers is one array); what cannot be
        one (None, complex numbers, a ragged list) is an error naming this layer. String data
        stays a numpy array of str for a layer that takes strings (`_takes_strings`)."""
        def convert(t):
            if isinstance(t, Tensor):
                return t
            if dtypes.is_string_data(t):
                if self._takes_strings():
                    return np.asarray(t)
                raise TypeError(f"{type(self).__name__} '{self.name}': received strings ({_short(t)}), but this layer "
                                "takes numbers (lamina tensors hold numbers, not strings). Turn strings into numbers "
                                "first with a TextVectorization, StringLookup or Hashing layer (in a model: "
                                "lamina.Input(shape=(), dtype='string') followed by one of them)")
            try:
                return convert_to_tensor(t, dtype=None)
            except (TypeError, ValueError) as e:
                msg = str(e)
                if "inhomogeneous" in msg:
                    msg = ("its nested sequences have different lengths (a ragged list); make every row the same "
                           "length (pad it)")
                raise type(e)(f"{type(self).__name__} '{self.name}': cannot use the input {_short(t)} as a tensor: "
                              f"{msg}") from e
        if isinstance(inputs, (list, tuple)) and inputs and (
                all(isinstance(v, (bool, int, float, np.number)) for v in flatten(inputs)) or
                all(isinstance(v, (str, bytes)) for v in flatten(inputs))):
            return convert(np.asarray(inputs) if isinstance(flatten(inputs)[0], (str, bytes)) else inputs)
        return map_structure(convert, inputs)

    def compute_mask(self, inputs, mask=None):
        """The mask of the outputs: the input mask when the layer supports masking, else None."""
        return mask if self.supports_masking else None

    def compute_output_shape(self, input_shape):
        """Output shape for an input shape (None for unknown dims). The base version traces `call`."""
        from .symbolic import trace_output_shape
        return trace_output_shape(self, input_shape)

    # -- config (Keras 3's keys; nested objects in Keras's serialized form) --
    def get_config(self):
        from ..saving import dtype_policy_config
        config = {"name": self.name, "trainable": self.trainable, "dtype": dtype_policy_config(self._dtype_policy.name)}
        if self.quantization_mode == "int4":   # Keras's Int4DTypePolicy, with its block size
            from ..dtype_policies import serialize
            config["dtype"] = serialize(self._dtype_policy)
        elif self.quantization_mode is not None:
            from .quantization import policy_config
            config["dtype"] = policy_config(getattr(self._dtype_policy, "source_name", None) or "float32")
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = _regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_build_config(self):
        """{"input_shape": ...} the layer was built with (one input), as Keras records it."""
        shape = getattr(self, "_build_input_shape", None)
        if self._build_overridden and shape is not None and all(d is None or isinstance(d, int) for d in shape):
            return {"input_shape": tuple(shape)}
        return None

    def build_from_config(self, config):
        if config and config.get("input_shape") is not None and not self.built:
            self._maybe_build(tuple(config["input_shape"]))

    # -- saved state: Keras's save_own_variables / load_own_variables protocol --
    def _saved_variables(self):
        """This layer's own weights (not its sub-layers') in Keras's order: those created
        trainable, then those created non-trainable."""
        if self.quantization_mode is not None:  # Keras's order: the int8 kernel, the bias, the scale
            return list(self._quantized_variables)
        own = self._own_weights
        return [w for w in own if id(w) not in self._always_frozen] + \
            [w for w in own if id(w) in self._always_frozen]

    def save_own_variables(self, store):
        """Writes this layer's own weights into `store` under "0", "1", ..."""
        for i, w in enumerate(self._saved_variables()):
            store[str(i)] = w.numpy()

    def load_own_variables(self, store):
        """Reads what save_own_variables wrote; the count and every shape must match."""
        ws = self._saved_variables()
        if len(store.keys()) != len(ws):
            raise ValueError(f"Weight count mismatch for layer '{self.name}' ({type(self).__name__}): it has "
                             f"{len(ws)} variables {[w.name for w in ws]}, the file has {len(store.keys())} for it"
                             + ("" if self.built or not len(store.keys()) else
                                " (the layer was never built: give the model an Input or call it once first)"))
        values = [np.asarray(store[str(i)]) for i in range(len(ws))]
        for w, v in zip(ws, values):
            if tuple(v.shape) != w.shape:
                raise ValueError(f"Shape mismatch for layer '{self.name}' ({type(self).__name__}), weight "
                                 f"'{w.name}': expected shape {w.shape}, the file has shape {tuple(v.shape)}")
        for w, v in zip(ws, values):
            w.assign(v)

    # -- functional helpers --
    def _node_output(self, attr):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has never been called on a symbolic input, so it has no {attr}")
        # Keras's Operation.input/output: the first call's tensors, however often the layer was called
        # since (a shared layer, or a Sequential rebuilt after each add); get_*_at(i) reads the others
        return getattr(self._inbound_nodes[0], attr + "s")

    @property
    def input(self):
        r = self._node_output("input")
        return r[0] if len(r) == 1 else r

    @property
    def output(self):
        r = self._node_output("output")
        return r[0] if len(r) == 1 else r

    def get_input_at(self, i):
        r = self._inbound_nodes[i].inputs
        return r[0] if len(r) == 1 else r

    def get_output_at(self, i):
        r = self._inbound_nodes[i].outputs
        return r[0] if len(r) == 1 else r

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _short(value):
    r = f"{type(value).__name__} {value!r}" if not isinstance(value, np.ndarray) else \
        f"array of dtype {value.dtype} and shape {value.shape}"
    return r if len(r) <= 80 else r[:77] + "..."


def _move(t, dev):
    """t on `dev` (a differentiable copy when it is elsewhere), keeping its mask."""
    if t.device is dev:
        return t
    out = t.to(dev)
    if t._keras_mask is not None:
        out._keras_mask = t._keras_mask.to(dev)
    return out


def _dedupe(ws):
    seen, out = set(), []
    for w in ws:
        if id(w) not in seen:
            seen.add(id(w))
            out.append(w)
    return out

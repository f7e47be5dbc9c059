"""Core layers: Dense, Activation, Dropout, ActivityRegularization, Lambda, Identity, and the activation
layers (Softmax, ReLU, LeakyReLU, PReLU, ELU)."""
import inspect
import types

import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend import validation
from ..backend.linalg import matmul_bias
from ..backend.nn import bias_relu
from ..backend.validation import positive_int as _positive_int
from .convolutional import _activation, run_op
from .input_layer import KerasTensor
from .layer import InputSpec, Layer, flatten, map_structure, unique_name


class Dense(Layer):
    """`output = activation(inputs @ kernel + bias)`; kernel (in, units), acts on the last axis.

    LoRA (`lora_rank=r`, or `enable_lora(r)` on a built layer): the kernel is frozen and a
    low-rank update (lora_alpha / r) * lora_kernel_a @ lora_kernel_b is trained instead, as in
    Keras (a: (in, r), he_uniform; b: (r, units), zeros, so training starts from the kernel)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, lora_rank=None,
                 lora_alpha=None, quantization_config=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        from .quantization import check_quantization_config
        qmode = check_quantization_config(quantization_config, "Dense")
        if qmode and not getattr(self, "_pending_quantization", None):
            self._pending_quantization = qmode  # quantized once built (a Keras int8 / int4 layer's config)
        self.units = _positive_int("Dense", "units", units)
        self.lora_rank = _positive_int("Dense", "lora_rank", lora_rank) if lora_rank is not None else None
        if lora_alpha is not None and (isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float))
                                       or lora_alpha <= 0):
            raise ValueError(f"Dense: `lora_alpha` must be a positive number, received lora_alpha={lora_alpha!r}")
        self.lora_alpha = lora_alpha if lora_alpha is not None else self.lora_rank
        self.lora_enabled = False
        self.activation = _activation(activation, "Dense")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.input_spec = InputSpec(min_ndim=2)
        self.supports_masking = True

    def build(self, input_shape):
        if not input_shape:
            raise ValueError(f"Dense '{self.name}': expected an input with at least 1 dimension (the features "
                             f"on the last axis), received a scalar (shape {tuple(input_shape or ())}); pass a "
                             "batch such as np.array([[1.0]])")
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"Dense '{self.name}': the last dimension of the input must be known, received "
                             f"shape {input_shape}")
        validation.check_weight(self, "kernel", (in_dim, self.units), self.dtype)
        self.kernel = self.add_weight(name="kernel", shape=(in_dim, self.units), initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.input_spec = InputSpec(min_ndim=2, axes={-1: in_dim})
        if self.lora_rank:
            self.built = True
            self.enable_lora(self.lora_rank, self.lora_alpha)

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Freezes the kernel and adds the trainable low-rank factors (Keras's `enable_lora`)."""
        enable_lora_on(self, "kernel", rank, lora_alpha, a_initializer, b_initializer)

    def save_own_variables(self, store):
        """As Keras: with LoRA the merged kernel is saved (then the bias), not the factors."""
        if not self.built:
            return
        if self.quantization_mode is not None:
            return Layer.save_own_variables(self, store)
        store["0"] = self.merged_kernel().numpy()
        if self.bias is not None:
            store["1"] = self.bias.numpy()

    def load_own_variables(self, store):
        """As Keras: the kernel (and bias) are assigned; with LoRA the factors restart at zero."""
        if not self.lora_enabled:
            return Layer.load_own_variables(self, store)
        load_merged_lora(self, store, self.kernel)

    def merged_kernel(self):
        """The kernel the layer applies: with LoRA, kernel + (alpha / rank) * a @ b."""
        if not self.lora_enabled:
            return self.kernel
        delta = ops.matmul(self.lora_kernel_a, self.lora_kernel_b)
        return ops.add(self.kernel, ops.multiply(delta, float(self.lora_alpha) / self.lora_rank))

    def call(self, inputs):
        if self.bias is not None and not self.lora_enabled and self.activation is not _activations.relu:
            x = matmul_bias(inputs, self.kernel, self.bias)  # one kernel call; bias + ReLU has its own below
            return self.activation(x) if self.activation is not _activations.linear else x
        x = ops.matmul(inputs, self.kernel)
        if self.lora_enabled:
            low = ops.matmul(ops.matmul(inputs, self.lora_kernel_a), self.lora_kernel_b)
            x = ops.add(x, ops.multiply(low, float(self.lora_alpha) / self.lora_rank))
        if self.bias is not None:
            if self.activation is _activations.relu:
                return bias_relu(x, self.bias)  # one pass instead of two, forward and backward
            x = ops.add(x, self.bias)
        return self.activation(x) if self.activation is not _activations.linear else x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": _activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": _constraints.serialize(self.kernel_constraint),
                "bias_constraint": _constraints.serialize(self.bias_constraint),
                "quantization_config": _quantization_config(self),
                **({"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha} if self.lora_rank else {})}


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation(activation, "Activation")
        self.supports_masking = True

    def call(self, inputs):
        return self.activation(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "activation": _activations.serialize(self.activation)}


class Dropout(Layer):
    """Randomly zeroes a fraction `rate` of the inputs during training and scales the rest by 1/(1-rate)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"Dropout: `rate` must be a number in [0, 1], received rate={rate!r}")
        self.rate, self.noise_shape, self.seed = float(rate), noise_shape, seed
        from ..backend.random import SeedGenerator
        self._seed_gen = SeedGenerator(seed) if seed is not None else None
        self.supports_masking = True

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            if self.rate >= 1.0:   # everything dropped: zeros, as Keras
                return ops.multiply(inputs, 0.0)
            return ops.dropout(inputs, self.rate, noise_shape=self.noise_shape, seed=self._seed_gen)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed}


class ActivityRegularization(Layer):
    """Passes its inputs through and adds `l1 * sum(|x|) + l2 * sum(x^2)` (over the batch size) to
    the model's losses, as Keras's."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        for name, value in (("l1", l1), ("l2", l2)):
            _real("ActivityRegularization", name, value, minimum=0.0)
        super().__init__(activity_regularizer=_regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1, self.l2 = l1, l2
        self.supports_masking = True

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)
        return {**config, "l1": self.l1, "l2": self.l2}


class Masking(Layer):
    """Marks timesteps whose features all equal `mask_value` as masked for downstream layers
    (RNNs carry their state over them; losses and metrics ignore them) and zeroes them."""

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return ops.any(ops.not_equal(inputs, self.mask_value), axis=-1)

    def call(self, inputs):
        keep = ops.any(ops.not_equal(inputs, self.mask_value), axis=-1, keepdims=True)
        return ops.multiply(inputs, ops.cast(keep, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


class Lambda(Layer):
    """Wraps a function of tensors as a layer: `Lambda(lambda x: x * 2)`, as Keras's.

    `arguments` are passed to the function as keywords, and `mask` / `training` too when it takes
    them. `mask` (a function (inputs, mask) -> mask, or a fixed mask) is the output mask.
    `output_shape` (without the batch dimension, or a function of the input shape) gives the
    symbolic output shape; by default the function runs once on stand-in values. Saving writes a
    named function by its registered name and a Python lambda as its bytecode, which loads back
    only outside safe mode (`load_model(..., safe_mode=False)`), as in Keras."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda: `function` must be callable, received {function!r}")
        self.function, self.arguments = function, dict(arguments or {})
        self.mask = mask
        self.supports_masking = mask is not None
        self._output_shape = output_shape
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError):
            params = {}
        self._fn_expects_mask_arg = "mask" in params
        self._fn_expects_training_arg = "training" in params

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)
        if self._fn_expects_mask_arg:
            kwargs["mask"] = mask
        if self._fn_expects_training_arg:
            kwargs["training"] = training
        try:
            return self.function(inputs, **kwargs)
        except NameError as e:
            if not getattr(self.function, "_loaded_from_bytecode", False):
                raise
            raise NameError(f"Lambda layer '{self.name}': {e}. Its function was loaded from saved bytecode, which "
                            "keeps the lambda's default values and closure but not the global names of the module "
                            "that defined it (only keras, lamina, ops, layers, np and numpy are defined). Pass such "
                            "values through `arguments=` or default arguments, or use a registered named "
                            "function.") from None

    def compute_mask(self, inputs, mask=None):
        return self.mask(inputs, mask) if callable(self.mask) else self.mask

    def compute_output_shape(self, input_shape):
        if self._output_shape is None:
            return Layer.compute_output_shape(self, input_shape)
        if callable(self._output_shape):
            return self._output_shape(input_shape)
        return (input_shape[0] if isinstance(input_shape, tuple) else None,) + tuple(self._output_shape)

    def get_config(self):
        from ..saving import serialize_keras_object
        config = {**super().get_config(), "function": _function_config(self.function)}
        if self._output_shape is not None:
            config["output_shape"] = _function_config(self._output_shape) if callable(self._output_shape) \
                else self._output_shape
        if self.mask is not None:
            config["mask"] = _function_config(self.mask) if callable(self.mask) else serialize_keras_object(self.mask)
        config["arguments"] = serialize_keras_object(self.arguments)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .serialization import _lambda_config
        return cls(**_lambda_config(config, custom_objects))


def _function_config(fn):
    """A Lambda's function as Keras writes it: a Python lambda as its bytecode ("__lambda__"),
    a named function by its (registered) name."""
    from ..saving import func_dump, serialize_keras_object
    if isinstance(fn, types.LambdaType) and fn.__name__ == "<lambda>":
        code, defaults, closure = func_dump(fn)
        return {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": closure}}
    return serialize_keras_object(fn)


class SymbolicOp(Layer):
    """A `lamina.ops` function called on KerasTensors (Keras 3's functional API records such calls,
    e.g. `x = ops.concatenate([a, ops.square(b)])`, as nodes of the graph): when the model runs, the
    function is called again with the real tensors in place of the KerasTensors. Named after the
    op.

    Saved as Keras saves the Operation it builds (layers/_keras_ops.py, taken from Keras): class
    `Concatenate` of module `keras.src.ops.numpy`, the constructor's arguments (`axis`) in its
    config and the `call` arguments in its node, so lamina and Keras read each other's files. An
    op Keras does not have (or called with an argument Keras's does not take) is not serialized."""

    _is_op = True   # listed in a model's `operations`, not its `layers` (as Keras's ops)

    def __init__(self, function, args=None, kwargs=None, static=None, **kw):
        super().__init__(name=kw.pop("name", None) or unique_name(function.__name__), **kw)
        self.function = function
        # the call with KerasTensors where tensors will go; None until a loaded op is first called
        self._template = None if args is None and kwargs is None else (list(args or []), dict(kwargs or {}))
        self._static = dict(static or {})   # a loaded op's constructor arguments (Keras's names)
        self._out_dtypes = None

    def __call__(self, *args, **kwargs):
        if self._template is None:   # a loaded op: Keras's call arguments, joined to its config
            self._template = _keras_template(self.function, self._static, args, kwargs, self.name)
            args, kwargs = ([t for t in flatten(self._template) if isinstance(t, KerasTensor)],), {}
        return super().__call__(*args, **kwargs)

    def call(self, inputs):
        values = iter(inputs)
        args, kwargs = map_structure(lambda v: next(values) if isinstance(v, KerasTensor) else v, self._template)
        out = self.function(*args, **kwargs)
        self._out_dtypes = [getattr(t, "dtype", None) for t in flatten(out)]  # read by the symbolic call
        return out

    def compute_output_dtype(self, input_dtypes):
        return self._out_dtypes or self.dtype

    def copy(self):
        """A new node for the same call (what clone_model uses: an op has no config and no state)."""
        return SymbolicOp(self.function, *self._template)

    # -- saving, as Keras's Operation --
    def _keras_split(self):
        """(family, class name, constructor arguments, call arguments) in Keras's names, or a
        TypeError saying why this op cannot be saved."""
        from ._keras_ops import OPS
        name = self.function.__name__
        entry = OPS.get(_KERAS_ALIASES.get(name, name))
        why = None
        if entry is None:
            why = "Keras has no such op"
        else:
            family, cls_name, keras_params, call_params = entry[0]
            try:
                bound = inspect.signature(self.function).bind(*self._template[0], **self._template[1]).arguments
            except TypeError as e:
                bound, why = None, str(e)
            if bound is not None:
                ours = list(inspect.signature(self.function).parameters)
                by_keras = {}
                for p, v in bound.items():   # lamina's parameter names to Keras's, by position
                    i = ours.index(p)
                    if i >= len(keras_params):
                        why = f"Keras's {name} takes no argument {p!r}"
                        break
                    by_keras[keras_params[i]] = v
                else:
                    static = {k: v for k, v in by_keras.items() if k not in call_params and "*" + k not in call_params}
                    call = []
                    for c in call_params:
                        if c.startswith("*"):
                            call.extend(by_keras.get(c[1:], ()))
                        elif c in by_keras:
                            call.append(by_keras[c])
                    return family, cls_name, static, call
        raise TypeError(f"Layer '{self.name}' is the op {name!r} called on symbolic tensors of a functional model, "
                        f"which lamina cannot save ({why}); save the weights with save_weights() and rebuild the "
                        "model in code, or use a layer class in place of the op")

    def _keras_class(self):
        family, cls_name, _, _ = self._keras_split()
        return f"keras.src.ops.{family}", cls_name

    def _keras_call_args(self):
        """The node's arguments as Keras saves them (its call's)."""
        return self._keras_split()[3], {}

    def get_config(self):
        return {"name": self.name, **self._keras_split()[2]}


# lamina op names whose Keras function calls another one (Keras's `abs(x)` is `absolute(x)`)
_KERAS_ALIASES = {"abs": "absolute", "conj": "conjugate"}


def _keras_template(function, static, args, kwargs, name):
    """(args, kwargs) of `function` for an op loaded from Keras's form: the constructor's arguments
    (`static`) and the call's (`args`, `kwargs`), Keras's names mapped to lamina's by position."""
    from ._keras_ops import OPS
    _, cls_name, keras_params, call_params = OPS[_KERAS_ALIASES.get(function.__name__, function.__name__)][0]
    values = dict(static)
    rest = list(args)
    for c in call_params:
        if c.startswith("*"):
            values[c[1:]] = tuple(rest)
            rest = []
        elif rest:
            values[c] = rest.pop(0)
    values.update(kwargs)
    if function.__name__ == "get_item" and isinstance(values.get("key"), list):
        values["key"] = tuple(values["key"])   # as Keras's GetItem: x[a, b]'s key comes back from JSON as a list
    unknown = sorted(set(values) - set(keras_params))
    if unknown:
        raise ValueError(f"Op '{name}' ({cls_name}): Keras's {function.__name__} has no argument {unknown[0]!r}")
    params = list(inspect.signature(function).parameters.values())
    varargs = any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params)
    out_args, out_kwargs = [], {}
    for p, k in zip(params, keras_params):   # in the signature's order: positional ones stay in place
        if k not in values:
            continue
        v = values[k]
        if p.kind == inspect.Parameter.VAR_POSITIONAL:
            out_args.extend(v)
        elif p.kind == inspect.Parameter.POSITIONAL_ONLY or (varargs and p.kind == p.POSITIONAL_OR_KEYWORD):
            out_args.append(v)
        else:
            out_kwargs[p.name] = v
    return out_args, out_kwargs


def keras_op(module, class_name, config):
    """A SymbolicOp for Keras's saved Operation `class_name` of `module` (keras.src.ops.<family>),
    or None when the module is not one of Keras's op modules."""
    from ._keras_ops import OPS
    if not module or not module.startswith("keras.src.ops."):
        return None
    family = module.rsplit(".", 1)[1]
    name = next((n for n, rows in OPS.items() if rows[0][0] == family and rows[0][1] == class_name), None)
    space = getattr(ops, family, ops) if family in ("nn", "numpy", "linalg", "image") else ops
    fn = getattr(space, name, None) if name else None
    if fn is None:
        raise ValueError(f"Unknown op '{class_name}' (module '{module}'): lamina has no op of that name")
    config = dict(config or {})
    op_name = config.pop("name", None)
    return SymbolicOp(getattr(fn, "__wrapped__", fn), static=config, name=op_name)


def record_symbolic_op(function, args, kwargs):
    """`function(*args, **kwargs)` with KerasTensors among the arguments: a SymbolicOp node of the
    functional graph, whose outputs are returned (registered with lamina.ops)."""
    inputs = [t for t in flatten((list(args), dict(kwargs))) if isinstance(t, KerasTensor)]
    return SymbolicOp(function, args, kwargs)(inputs)


ops._register_symbolic(KerasTensor, record_symbolic_op)


class Softmax(Layer):
    """Softmax over `axis` (an int, or a list of ints: one softmax over those axes together).

    `mask` (from the input's mask, or given): True (or > 0.5) keeps a logit; it must broadcast to
    the inputs from the right (each dimension 1 or equal, no more dimensions than the inputs).
    Masked logits are set to -1e9 before the softmax and their probabilities to 0 after it (a
    fully masked row is all zeros), as Keras's Softmax."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        if not (is_int(axis) or (isinstance(axis, (list, tuple)) and axis and all(is_int(a) for a in axis))):
            raise ValueError(f"Softmax: `axis` must be an integer or a list of integers, received axis={axis!r}")
        self.axis = int(axis) if is_int(axis) else type(axis)(int(a) for a in axis)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            mask = ops.convert_to_tensor(mask)
            if mask.ndim > inputs.ndim or any(m != 1 and m != i for m, i in zip(mask.shape[::-1], inputs.shape[::-1])):
                raise ValueError(f"Softmax '{self.name}': the mask must broadcast to the inputs (each of its "
                                 f"dimensions, aligned from the right, 1 or the inputs' size, and no more dimensions "
                                 f"than the inputs), received inputs of shape {inputs.shape} and a mask of shape "
                                 f"{mask.shape}. A (batch, steps) mask of (batch, steps, features) logits needs a "
                                 "last axis of size 1: pass mask=mask[..., None]")
            if mask.dtype != "bool":
                mask = ops.greater(mask, 0.5)
            inputs = ops.where(mask, inputs, -1e9)
        axis = tuple(self.axis) if isinstance(self.axis, (list, tuple)) else self.axis
        out = run_op(self, ops.softmax, inputs, axis=axis)
        return out if mask is None else ops.where(mask, out, 0.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class ReLU(Layer):
    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None:
            _real("ReLU", "max_value", max_value, minimum=0.0)
        _real("ReLU", "negative_slope", negative_slope, minimum=0.0)
        _real("ReLU", "threshold", threshold, minimum=0.0)
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold
        self.supports_masking = True

    def call(self, inputs):
        return _activations.relu(inputs, negative_slope=self.negative_slope, max_value=self.max_value,
                                 threshold=self.threshold)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class LeakyReLU(Layer):
    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = _real("LeakyReLU", "negative_slope", negative_slope, minimum=0.0)
        self.supports_masking = True

    def call(self, inputs):
        return ops.leaky_relu(inputs, negative_slope=self.negative_slope)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class PReLU(Layer):
    """Parametric ReLU: `x` where x >= 0, `alpha * x` elsewhere, with a learned `alpha` of the
    input's per-sample shape (one slope per element), shared (size 1) along `shared_axes`
    (1-based axes of the input, e.g. shared_axes=[1, 2] for one slope per channel of images)."""

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = _initializers.get(alpha_initializer)
        self.alpha_regularizer = _regularizers.get(alpha_regularizer)
        self.alpha_constraint = _constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1 for a in axes):
                raise ValueError(f"PReLU: `shared_axes` must be an int or a list of ints >= 1 (axes of the input, "
                                 f"not counting the batch axis 0), received shared_axes={shared_axes!r}")
            self.shared_axes = [int(a) for a in axes]
        self.supports_masking = True

    def build(self, input_shape):
        nd = len(input_shape)
        shared = set(self.shared_axes or ())
        bad = sorted(a for a in shared if a >= nd)
        if bad:
            raise ValueError(f"PReLU '{self.name}': shared_axes {self.shared_axes} names axis {bad[0]}, but the "
                             f"inputs have shape {tuple(input_shape)} (axes 1..{nd - 1} after the batch axis)")
        shape = tuple(1 if i in shared else input_shape[i] for i in range(1, nd))
        if any(d is None for d in shape):
            raise ValueError(f"PReLU '{self.name}': every input axis without a shared alpha must have a known "
                             f"size, received shape {tuple(input_shape)}; share the unknown axes with "
                             "shared_axes=[...]")
        validation.check_weight(self, "alpha", shape, self.dtype)
        self.alpha = self.add_weight(name="alpha", shape=shape, initializer=self.alpha_initializer,
                                     regularizer=self.alpha_regularizer, constraint=self.alpha_constraint)
        self.input_spec = InputSpec(ndim=nd, axes={i: input_shape[i] for i in range(1, nd) if i not in shared})

    def call(self, inputs):
        # relu(x) - alpha * relu(-x), as Keras
        return ops.subtract(ops.relu(inputs), ops.multiply(self.alpha, ops.relu(ops.negative(inputs))))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": _initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": _regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": _constraints.serialize(self.alpha_constraint), "shared_axes": self.shared_axes}


class ELU(Layer):
    """Exponential linear unit: `x` where x > 0, `alpha * (exp(x) - 1)` elsewhere."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
            raise ValueError(f"ELU: `alpha` must be a number, received alpha={alpha!r}")
        self.alpha = float(alpha)
        self.supports_masking = True

    def call(self, inputs):
        return ops.elu(inputs, alpha=self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class Identity(Layer):
    """Returns its inputs (any structure, any dtype) unchanged; passes masks through."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_dtype(self, in_dtypes):
        if isinstance(in_dtypes, str):
            return in_dtypes
        kinds = set(flatten(in_dtypes))
        return kinds.pop() if len(kinds) == 1 else self.dtype

def _real(who, arg, value, minimum=None):
    """A constructor's number argument as a float: a finite real number (>= minimum), else a
    ValueError naming the layer, the argument and the value."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or (minimum is not None and value < minimum):
        want = "a number" if minimum is None else f"a number >= {minimum:g}"
        raise ValueError(f"{who}: `{arg}` must be {want}, received {arg}={value!r}")
    return float(value)


def _quantization_config(layer):
    from .quantization import quantization_config
    return quantization_config(layer) if layer.quantization_mode is not None else None


def enable_lora_on(layer, kernel_attr, rank, lora_alpha, a_initializer, b_initializer, weight="kernel",
                   what="kernel"):
    """Keras's enable_lora for a layer whose weight `kernel_attr` (..., out) gets the factors
    `lora_<weight>_a` (..., rank) and `lora_<weight>_b` (rank, out), regularized as the weight
    (`<weight>_regularizer`); the weight is frozen. Dense and EinsumDense (weight "kernel"),
    Embedding (weight "embeddings")."""
    who = f"{type(layer).__name__} '{layer.name}'"
    if getattr(layer, f"{weight}_constraint") is not None:
        raise ValueError(f"{who}: LoRA is incompatible with {what} constraints; remove the `{weight}_constraint` "
                         "argument to enable LoRA")
    if not layer.built:
        raise ValueError(f"{who}: cannot enable LoRA on a layer that isn't built yet; call it on an input (or "
                         "build it) first, or pass lora_rank= to the constructor")
    if layer.lora_enabled:
        raise ValueError(f"{who}: LoRA is already enabled; this can only be done once per layer")
    rank = _positive_int(who, "rank", rank)
    kernel = getattr(layer, kernel_attr)
    regularizer = getattr(layer, f"{weight}_regularizer")
    for side, shape, init in (("a", kernel.shape[:-1] + (rank,), a_initializer),
                              ("b", (rank, kernel.shape[-1]), b_initializer)):
        setattr(layer, f"lora_{weight}_{side}", layer.add_weight(name=f"lora_{weight}_{side}", shape=shape,
                                                                 initializer=init, regularizer=regularizer))
    kernel.trainable = False
    layer._always_frozen.add(id(kernel))
    layer.lora_enabled, layer.lora_rank = True, rank
    layer.lora_alpha = lora_alpha if lora_alpha is not None else rank


def load_merged_lora(layer, store, kernel):
    """Loads what a LoRA layer's save_own_variables wrote (Keras's form: the merged kernel, then
    the bias) into `kernel` and the bias; the LoRA factors restart at zero (Dense, EinsumDense)."""
    who = f"{type(layer).__name__} '{layer.name}'"
    ws = [kernel] + ([layer.bias] if layer.bias is not None else [])
    if len(store.keys()) != len(ws):
        raise ValueError(f"Weight count mismatch for {who} (LoRA): it expects {len(ws)} saved variables (the merged "
                         f"kernel{' and the bias' if layer.bias is not None else ''}), the file has "
                         f"{len(store.keys())}")
    for i, w in enumerate(ws):
        v = np.asarray(store[str(i)])
        if tuple(v.shape) != w.shape:
            raise ValueError(f"Shape mismatch for {who}, weight '{w.name}': expected shape {w.shape}, the file has "
                             f"shape {tuple(v.shape)}")
        w.assign(v)
    layer.lora_kernel_a.assign(np.zeros(layer.lora_kernel_a.shape, np.float32))
    layer.lora_kernel_b.assign(np.zeros(layer.lora_kernel_b.shape, np.float32))

"""Activation functions by name or callable, as `keras.activations`."""
from . import ops


def linear(x):
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return ops.relu(x)
    if max_value == 6.0 and negative_slope == 0.0 and threshold == 0.0:
        return ops.relu6(x)
    if negative_slope == 0.0:   # not (x - threshold) * 0, which is NaN at x = -inf (NaN stays NaN)
        y = ops.where(ops.less(x, threshold), 0.0, x)
    else:
        y = ops.where(ops.greater_equal(x, threshold), x, ops.multiply(ops.subtract(x, threshold), negative_slope))
    return ops.minimum(y, max_value) if max_value is not None else y


def sigmoid(x):
    return ops.sigmoid(x)


def tanh(x):
    return ops.tanh(x)


def softmax(x, axis=-1):
    return ops.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    return ops.log_softmax(x, axis=axis)


def elu(x, alpha=1.0):
    return ops.elu(x, alpha=alpha)


def selu(x):
    return ops.selu(x)


def softplus(x):
    return ops.softplus(x)


def softsign(x):
    return ops.softsign(x)


def gelu(x, approximate=False):
    return ops.gelu(x, approximate=approximate)


def silu(x):
    return ops.silu(x)


swish = silu


def leaky_relu(x, negative_slope=0.2):
    return ops.leaky_relu(x, negative_slope=negative_slope)


def relu6(x):
    return ops.relu6(x)


def hard_sigmoid(x):
    return ops.hard_sigmoid(x)


def exponential(x):
    return ops.exp(x)


def celu(x, alpha=1.0):
    return ops.celu(x, alpha=alpha)


def glu(x, axis=-1):
    return ops.glu(x, axis=axis)


def hard_shrink(x, threshold=0.5):
    return ops.hard_shrink(x, threshold=threshold)


def hard_silu(x):
    return ops.hard_silu(x)


hard_swish = hard_silu


def hard_tanh(x):
    return ops.hard_tanh(x)


def log_sigmoid(x):
    return ops.log_sigmoid(x)


def mish(x):
    """x * tanh(softplus(x)) (Misra, 2019)."""
    return ops.multiply(x, ops.tanh(ops.softplus(x)))


def soft_shrink(x, threshold=0.5):
    return ops.soft_shrink(x, threshold=threshold)


def sparse_plus(x):
    return ops.sparse_plus(x)


def sparse_sigmoid(x):
    return ops.sparse_sigmoid(x)


def sparsemax(x, axis=-1):
    return ops.sparsemax(x, axis=axis)


def squareplus(x, b=4):
    return ops.squareplus(x, b=b)


def tanh_shrink(x):
    return ops.tanh_shrink(x)


def threshold(x, threshold, default_value):
    """x where x > threshold, else default_value."""
    return ops.threshold(x, threshold, default_value)


_BY_NAME = {f.__name__: f for f in (linear, relu, sigmoid, tanh, softmax, log_softmax, elu, selu,
                                    softplus, softsign, gelu, silu, leaky_relu, relu6, hard_sigmoid,
                                    exponential, celu, glu, hard_shrink, hard_silu, hard_tanh, log_sigmoid,
                                    mish, soft_shrink, sparse_plus, sparse_sigmoid, sparsemax, squareplus,
                                    tanh_shrink, threshold)}
_BY_NAME["swish"] = silu
_BY_NAME["hard_swish"] = hard_silu


def get(identifier):
    """An activation from a name ("relu"), a callable, None (linear), or a config dict (Keras's
    {"class_name": "function", "config": name, ...} for a registered custom function)."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        f = _BY_NAME.get(identifier)
        if f is None:
            from . import saving
            f = saving.get_registered_object(identifier)
        if f is None:
            raise ValueError(f"Unknown activation {identifier!r}; expected one of {sorted(_BY_NAME)}, a callable, "
                             "or a function registered with @lamina.saving.register_keras_serializable()")
        return f
    if isinstance(identifier, dict):
        if identifier.get("class_name") == "function":
            name = identifier.get("config")
            if name in _BY_NAME:
                return _BY_NAME[name]
            from . import saving
            return get(saving.get_registered_object(identifier.get("registered_name") or name) or name)
        return get(identifier.get("config", {}).get("name", identifier.get("class_name")))
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret activation {identifier!r}: expected a name or a callable")


def serialize(activation):
    """A built-in activation's name, as Keras writes it; a custom function in Keras's function form."""
    fn = activation
    for name, f in _BY_NAME.items():
        if f is fn:
            return name
    from . import saving
    if fn in saving._GLOBAL_CUSTOM_NAMES:
        return saving.serialize_keras_object(fn)
    return getattr(fn, "__name__", str(fn))


def deserialize(config, custom_objects=None):
    """The activation a name or config describes (`serialize`'s inverse); `custom_objects` maps
    names to functions for this call."""
    if custom_objects:
        from .saving import CustomObjectScope
        with CustomObjectScope(custom_objects):
            return get(config)
    return get(config)

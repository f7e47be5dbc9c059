"""`lamina.ops`: the op namespace, with keras.ops's names and numpy semantics.

    from lamina import ops
    y = ops.matmul(x, w) + b

and keras.ops's sub-namespaces: `ops.nn`, `ops.numpy`, `ops.linalg` (the same functions as the
top-level ones) and `ops.image` (resize, affine_transform, map_coordinates, ... : backend/image.py).
"""
import functools as _functools

from .backend.tensor import convert_to_tensor, convert_to_numpy, is_tensor  # noqa: F401
from .backend.math import *  # noqa: F401,F403  (names listed in __all__)
from .backend.math import (abs, all, any, max, min, round, sum, cast, broadcast_to,  # noqa: F401
                           where, clip, mean, zeros, ones, full, zeros_like, ones_like, full_like)
from .backend.linalg import matmul, dot  # noqa: F401
from .backend.manipulation import *  # noqa: F401,F403
from .backend.nn import *  # noqa: F401,F403
from .backend.convolution_transpose import conv_transpose  # noqa: F401
from .backend.adaptive_pooling import adaptive_average_pool, adaptive_max_pool  # noqa: F401
from .backend.random import *  # noqa: F401,F403
from .backend.rnn import *  # noqa: F401,F403
from .backend.extra import *  # noqa: F401,F403
from .backend.einsum import einsum  # noqa: F401
from .backend.attention import dot_product_attention  # noqa: F401
from .backend.numpy_extra import *  # noqa: F401,F403
from .backend.nn_extra import *  # noqa: F401,F403
from .backend.control_flow import *  # noqa: F401,F403
from .backend.special import *  # noqa: F401,F403
from .backend.linalg_ops import *  # noqa: F401,F403  (its norm, numpy.linalg.norm's, replaces extra's)
from .backend.fft import *  # noqa: F401,F403
from .backend.ctc import ctc_loss, ctc_decode  # noqa: F401
from .backend.numpy_more import cdist, corrcoef, fabs, vectorize, view_as_real  # noqa: F401
from .backend.unsupported import eig, jvp, polar, view_as_complex  # noqa: F401
from .backend import image as _image, linalg_ops as _linalg_ops

# The sub-namespaces of keras.ops, with Keras 3.15's names: the same function objects as the
# top-level ones (ops.nn.relu is ops.relu), except ops.image's, which live only there (as in Keras).
_NN = ("adaptive_average_pool", "adaptive_max_pool", "average_pool", "batch_normalization", "binary_crossentropy",
       "categorical_crossentropy", "celu", "conv", "conv_transpose", "ctc_decode", "ctc_loss", "depth_to_space",
       "depthwise_conv", "dot_product_attention", "elu", "fold", "gelu", "glu", "hard_shrink", "hard_sigmoid",
       "hard_silu", "hard_swish", "hard_tanh", "layer_normalization", "leaky_relu", "log_sigmoid", "log_softmax",
       "max_pool", "moments", "multi_hot", "normalize", "one_hot", "polar", "psnr", "relu", "relu6",
       "rms_normalization", "selu", "separable_conv", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
       "softsign", "space_to_depth", "sparse_categorical_crossentropy", "sparse_plus", "sparse_sigmoid", "sparsemax",
       "squareplus", "swish", "tanh_shrink", "threshold", "unfold")
_NUMPY = (
    "abs", "absolute", "add", "all", "allclose", "amax", "amin", "angle", "any", "append", "arange", "arccos",
    "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "argmax", "argmin", "argpartition", "argsort",
    "array", "array_split", "average", "bartlett", "bincount", "bitwise_and", "bitwise_invert", "bitwise_left_shift",
    "bitwise_not", "bitwise_or", "bitwise_right_shift", "bitwise_xor", "blackman", "broadcast_to", "cbrt", "ceil",
    "clip", "concatenate", "conj", "conjugate", "copy", "corrcoef", "correlate", "cos", "cosh", "count_nonzero",
    "cross", "cumprod", "cumsum", "deg2rad", "diag", "diagflat", "diagonal", "diff", "digitize", "divide",
    "divide_no_nan", "dot", "dsplit", "dstack", "einsum", "empty", "empty_like", "equal", "exp", "exp2",
    "expand_dims", "expm1", "eye", "fabs", "flip", "fliplr", "flipud", "floor", "floor_divide", "fmax", "fmin",
    "fmod", "full", "full_like", "gcd", "geomspace", "get_item", "greater", "greater_equal", "hamming", "hanning",
    "heaviside", "histogram", "hsplit", "hstack", "hypot", "i0", "identity", "imag", "inner", "isclose", "isfinite",
    "isin", "isinf", "isnan", "isneginf", "isposinf", "isreal", "kaiser", "kron", "lcm", "ldexp", "left_shift",
    "less", "less_equal", "linspace", "log", "log10", "log1p", "log2", "logaddexp", "logaddexp2", "logical_and",
    "logical_not", "logical_or", "logical_xor", "logspace", "matmul", "max", "maximum", "mean", "median", "meshgrid",
    "min", "minimum", "mod", "moveaxis", "multiply", "nan_to_num", "nanargmax", "nanargmin", "nancumprod",
    "nancumsum", "nanmax", "nanmean", "nanmedian", "nanmin", "nanpercentile", "nanprod", "nanquantile", "nanstd",
    "nansum", "nanvar", "ndim", "negative", "nextafter", "nonzero", "not_equal", "ones", "ones_like", "outer", "pad",
    "percentile", "power", "prod", "ptp", "quantile", "rad2deg", "ravel", "real", "reciprocal", "repeat", "reshape",
    "right_shift", "roll", "rot90", "round", "searchsorted", "select", "sign", "signbit", "sin", "sinc", "sinh",
    "size", "slogdet", "sort", "split", "sqrt", "square", "squeeze", "stack", "std", "subtract", "sum", "swapaxes",
    "take", "take_along_axis", "tan", "tanh", "tensordot", "tile", "trace", "transpose", "trapezoid", "tri", "tril",
    "triu", "true_divide", "trunc", "unique", "unravel_index", "vander", "var", "vdot", "vectorize", "view",
    "vsplit", "vstack", "where", "zeros", "zeros_like")


# ---- ops on symbolic tensors ----------------------------------------------------------------------
# As in Keras 3, an op called on the KerasTensors of the functional API (`x = ops.concatenate([a, b])`
# between `Input` and `Model`) becomes a node of the graph: layers/ registers its KerasTensor type and
# the function that records such calls (the op is replayed on the real tensors when the model runs).
# ops.shape of a KerasTensor is its static shape (None for unknown dimensions).
_symbolic = {"type": None, "record": None}


def _register_symbolic(tensor_type, record):
    """Called by lamina.layers: ops given `tensor_type` among their arguments (directly, or in a list
    or tuple argument) return record(op, args, kwargs)."""
    _symbolic["type"], _symbolic["record"] = tensor_type, record


def _any_symbolic(values, kt):
    for a in values:
        t = type(a)
        if t is kt:
            return True
        if t is list or t is tuple:
            for b in a:
                if type(b) is kt:
                    return True
    return False


def _symbolic_aware(fn):
    @_functools.wraps(fn)
    def op(*args, **kwargs):
        kt = _symbolic["type"]
        if kt is not None and (_any_symbolic(args, kt) or (kwargs and _any_symbolic(kwargs.values(), kt))):
            return _symbolic["record"](fn, args, kwargs)
        return fn(*args, **kwargs)
    return op


def _static_shape(fn):
    @_functools.wraps(fn)
    def shape(x):
        kt = _symbolic["type"]
        return tuple(x.shape) if kt is not None and type(x) is kt else fn(x)
    return shape


# Not recorded: conversions, and control flow (scan, while_loop, cond, ...), which runs its Python
# functions eagerly and raises its own error on a KerasTensor (a loop traced on stand-in zeros might
# not end): a Lambda layer wraps it.
_NOT_OPS = {"convert_to_tensor", "convert_to_numpy", "is_tensor", "shape"}
_BACKEND = __name__.rpartition(".")[0] + ".backend"
for _name, _fn in list(globals().items()):
    _where = getattr(_fn, "__module__", None) or ""
    if not _name.startswith("_") and _name not in _NOT_OPS and callable(_fn) and not isinstance(_fn, type) and \
            _where.startswith(_BACKEND) and _where != _BACKEND + ".control_flow":
        globals()[_name] = _symbolic_aware(_fn)
shape = _static_shape(shape)  # noqa: F405


def _namespace(name, objects, doc):
    """A module `lamina.ops.<name>` holding `objects` ({name: object}), importable as
    `from lamina.ops.<name> import ...` (registered in sys.modules, as os.path is)."""
    import sys
    import types
    module = types.ModuleType(f"{__name__}.{name}", doc)
    module.__dict__.update(objects)
    module.__all__ = sorted(objects)
    sys.modules[module.__name__] = module
    return module


nn = _namespace("nn", {n: globals()[n] for n in _NN}, "keras.ops.nn: lamina's neural-network ops.")
numpy = _namespace("numpy", {n: globals()[n] for n in _NUMPY}, "keras.ops.numpy: lamina's numpy-family ops.")
linalg = _namespace("linalg", {n: globals()[n] for n in _linalg_ops.__all__ + ["eig", "jvp"]},
                    "keras.ops.linalg: lamina's linear algebra (backend/linalg_ops.py), with eig and jvp.")
image = _namespace("image", {n: _symbolic_aware(getattr(_image, n)) for n in _image.__all__}, _image.__doc__)
del _NN, _NUMPY

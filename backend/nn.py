"""Neural-network ops (activations, softmax, losses, normalisation, dropout, embedding), with
gradients. Convolution and pooling live in convolution.py and are re-exported here.

Names and semantics follow keras.ops.nn. Ops over one axis view their input as
(outer, R, inner) -- R the size of the axis -- and the C++ kernel walks outer * inner lanes.
"""
import math as _pymath

from . import dtypes, validation
from . import math as _m
from .autodiff import needs_grad, record
from .math import (RELU, RELU6, LEAKY_RELU, SOFTPLUS, SOFTSIGN, ELU, SELU, GELU, GELU_TANH, SILU,
                   HARD_SIGMOID, RELU_GRAD, RELU6_GRAD_X, LEAKY_RELU_GRAD_X, SOFTPLUS_GRAD_X,
                   SOFTSIGN_GRAD_X, ELU_GRAD_X, SELU_GRAD_X, GELU_GRAD_X, GELU_TANH_GRAD_X,
                   SILU_GRAD_X, HARD_SIGMOID_GRAD_X, _as_tensor, check_same_device, grad_kernel,
                   normalize_axes, sigmoid, tanh)
from .manipulation import reshape
from .random import dropout
from .settings import epsilon
from .sparse import IndexedSlices
from .tensor import Tensor, empty

__all__ = ["relu", "relu6", "leaky_relu", "sigmoid", "tanh", "softplus", "softsign", "elu", "selu",
           "gelu", "silu", "swish", "hard_sigmoid", "hard_silu", "hard_swish", "log_sigmoid",
           "softmax", "log_softmax", "sparse_categorical_crossentropy", "categorical_crossentropy",
           "binary_crossentropy", "one_hot", "dropout", "batch_norm_train", "batch_normalization",
           "moments", "layer_norm", "embedding_lookup"]



# ---- helpers ------------------------------------------------------------------------------------

def _view(t, shape):
    return Tensor(t._buf, tuple(shape), t.dtype, t.device)


def _float_input(op, x):
    """Float tensors pass; integer / bool inputs are converted to float32 (like math's unary ops)."""
    x = _as_tensor(x)
    if x.dtype not in dtypes.FLOATS:
        x = _m.cast(x, dtypes.FLOAT32)
    return x


def _require_f32(op, x, name, hint=""):
    """x must be a float tensor (float32; bfloat16 computes in float32 and gives float32)."""
    if x.dtype not in dtypes.FLOATS:
        raise TypeError(f"{op}: expected {name} of dtype float32, received {x.dtype} with shape "
                        f"{x.shape}{hint or '; cast it with ops.cast(x, ' + repr('float32') + ')'}")


def _block(op, shape, axis):
    """(axes, outer, R, inner) for reducing `shape` over `axis` (an int or adjacent axes)."""
    if len(shape) == 0:
        raise ValueError(f"{op}: expected a tensor with at least 1 dimension, received shape ()")
    axes = normalize_axes(axis, len(shape), op)
    if not axes:
        raise ValueError(f"{op}: axis={axis!r} names no axis of a tensor of shape {shape}; give at least one")
    if axes != tuple(range(axes[0], axes[-1] + 1)):
        raise ValueError(f"{op}: axes {axis} of a tensor of shape {shape} must be adjacent; "
                         "transpose the tensor so that they are")
    outer = _pymath.prod(shape[:axes[0]])
    R = _pymath.prod(shape[axes[0]:axes[-1] + 1])
    inner = _pymath.prod(shape[axes[-1] + 1:])
    return axes, outer, R, inner


def _one_axis(op, shape, axis):
    if len(shape) == 0:
        raise ValueError(f"{op}: expected a tensor with at least 1 dimension, received shape ()")
    a = validation.axis(axis, len(shape), op, shape=shape)
    return a, _pymath.prod(shape[:a]), shape[a], _pymath.prod(shape[a + 1:])


def _record_some(out, inputs, backward):
    """record() for ops with optional inputs (None entries are dropped); `backward(g, needs)`
    receives and returns one entry per listed input, None included."""
    present = [i for i, t in enumerate(inputs) if t is not None]
    ts = tuple(inputs[i] for i in present)
    if not needs_grad(*ts):
        return

    def bw(g, needs):
        full = [False] * len(inputs)
        for i, n in zip(present, needs):
            full[i] = n
        grads = backward(g, full)
        return tuple(grads[i] for i in present)
    record(out, ts, bw)


# ---- activations --------------------------------------------------------------------------------

def _activate(op, x, code, grad_code, alpha=0.0, arg="alpha"):
    x = _float_input(op, x)
    alpha = validation.real(alpha, op, arg)
    out = empty(x.shape, x.dtype, x.device)
    x.device.kernels.unary(code, x._buf, out._buf, alpha)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (grad_kernel(grad_code, x, g, alpha),))
    return out


def relu(x):
    """max(x, 0). Integer tensors stay integer (and get no gradient)."""
    x = _as_tensor(x)
    if dtypes.is_int(x.dtype):
        out = empty(x.shape, x.dtype, x.device)
        x.device.kernels.unary(RELU, x._buf, out._buf, 0.0)
        return out
    return _activate("relu", x, RELU, RELU_GRAD)


def bias_relu(x, bias):
    """relu(x + bias), the bias along the last axis, in one pass over x (Dense and convolution
    layers with activation='relu'); its gradient is one pass too (x's gradient and the bias's
    column sums together). Anything but a float x and a bias of its dtype on x's device runs as
    relu(add(x, bias))."""
    if not (isinstance(x, Tensor) and isinstance(bias, Tensor) and x.dtype in dtypes.FLOATS
            and bias.dtype == x.dtype and x.ndim >= 1 and bias.ndim == 1 and bias.shape[0] == x.shape[-1]
            and bias.device is x.device and bias.shape[0] > 0):
        return relu(_m.add(x, bias))
    out = empty(x.shape, x.dtype, x.device)
    x.device.kernels.bias_relu(x._buf, bias._buf, out._buf)
    if needs_grad(x, bias):
        cols = bias.shape[0]

        def backward(g, needs):
            dx = empty(x.shape, x.dtype, x.device) if needs[0] else None
            db = empty(bias.shape, bias.dtype, bias.device) if needs[1] else None
            x.device.kernels.bias_relu_grad(out._buf, g._buf, dx._buf if dx is not None else None,
                                            db._buf if db is not None else None, cols)
            return dx, db
        backward.bias_relu_inputs = (x, bias)  # max pooling folds this gradient into its own
        record(out, (x, bias), backward)
    return out


def relu6(x):
    """min(max(x, 0), 6)."""
    return _activate("relu6", x, RELU6, RELU6_GRAD_X)


def leaky_relu(x, negative_slope=0.2):
    """x where x > 0, negative_slope * x elsewhere."""
    return _activate("leaky_relu", x, LEAKY_RELU, LEAKY_RELU_GRAD_X, negative_slope, "negative_slope")


def softplus(x):
    """log(1 + exp(x)), computed stably."""
    return _activate("softplus", x, SOFTPLUS, SOFTPLUS_GRAD_X)


def softsign(x):
    """x / (1 + |x|)."""
    return _activate("softsign", x, SOFTSIGN, SOFTSIGN_GRAD_X)


def elu(x, alpha=1.0):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere."""
    return _activate("elu", x, ELU, ELU_GRAD_X, alpha)


def selu(x):
    """scale * elu(x, alpha) with the self-normalising constants (1.0507..., 1.6732...)."""
    return _activate("selu", x, SELU, SELU_GRAD_X)


def gelu(x, approximate=True):
    """Gaussian error linear unit: x * Phi(x); `approximate=True` uses the tanh form (Keras's
    default), False the exact erf form."""
    if approximate:
        return _activate("gelu", x, GELU_TANH, GELU_TANH_GRAD_X)
    return _activate("gelu", x, GELU, GELU_GRAD_X)


def silu(x):
    """x * sigmoid(x) (also called swish)."""
    return _activate("silu", x, SILU, SILU_GRAD_X)


swish = silu


def hard_sigmoid(x):
    """relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between (Keras 3's definition)."""
    return _activate("hard_sigmoid", x, HARD_SIGMOID, HARD_SIGMOID_GRAD_X)


def hard_silu(x):
    """x * hard_sigmoid(x)."""
    x = _float_input("hard_silu", x)
    return _m.multiply(x, hard_sigmoid(x))


hard_swish = hard_silu


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x), computed stably."""
    x = _float_input("log_sigmoid", x)
    return _m.negative(softplus(_m.negative(x)))


# ---- softmax ------------------------------------------------------------------------------------

def _softmax(op, x, axis, log):
    x = _float_input(op, x)
    _, outer, R, inner = _block(op, x.shape, axis)
    out = empty(x.shape, x.dtype, x.device)
    x.device.kernels.softmax(x._buf, outer, R, inner, log, out._buf)
    if needs_grad(x):
        def bw(g, n):
            r = empty(g.shape, g.dtype, g.device)
            g.device.kernels.softmax_grad(out._buf, g._buf, outer, R, inner, log, r._buf)
            return (r,)
        record(out, (x,), bw)
    return out


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis` (an int or a tuple of adjacent axes), computed stably."""
    return _softmax("softmax", x, axis, False)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along `axis`, computed stably."""
    return _softmax("log_softmax", x, axis, True)


# ---- losses -------------------------------------------------------------------------------------

def _loss_operands(op, target, output):
    target, output = _as_tensor(target), _as_tensor(output)
    _require_f32(op, output, "output (predictions or logits)",
                 "; the arguments are (target, output): check they are not swapped, or cast the "
                 "output with ops.cast(output, 'float32')")
    check_same_device(op, output, target)
    return target, output


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy between integer class ids and predictions, one loss per sample.

    target: integer ids of shape output.shape without `axis` (a trailing size-1 dimension is
    squeezed, as Keras does); float ids are truncated to integers. output: probabilities (clipped
    to [eps, 1 - eps], eps = config.epsilon(), after normalising by their sum) or, with
    from_logits=True, logits -- then softmax and cross-entropy are one fused kernel, forward and
    backward. Ids outside
    [0, num_classes) raise ValueError."""
    op = "sparse_categorical_crossentropy"
    target, output = _loss_operands(op, target, output)
    if target.dtype == dtypes.BOOL:
        raise TypeError(f"{op}: expected integer class ids as target, received a bool tensor of shape "
                        f"{target.shape}")
    if target.dtype == dtypes.FLOAT32:
        target = _m.cast(target, dtypes.INT64)
    a, outer, K, inner = _one_axis(op, output.shape, axis)
    expected = output.shape[:a] + output.shape[a + 1:]
    given = target.shape
    if target.ndim == output.ndim and target.ndim and target.shape[-1] == 1:
        target = _view(target, target.shape[:-1])
    if target.shape != expected:
        raise ValueError(f"{op}: target of shape {given} does not match output of shape {output.shape}: "
                         f"expected target shape {expected} (the output shape without axis {a}) holding "
                         "integer class ids; for one-hot targets use categorical_crossentropy")
    logits, eps = bool(from_logits), epsilon()
    loss = empty(expected, dtypes.FLOAT32, output.device)
    aux = empty(expected, dtypes.FLOAT32, output.device)
    output.device.kernels.xent_sparse(output._buf, target._buf, outer, K, inner, logits, eps,
                                      loss._buf, aux._buf)
    if needs_grad(output):
        def bw(g, n):
            dx = empty(output.shape, dtypes.FLOAT32, output.device)
            g.device.kernels.xent_sparse_grad(output._buf, target._buf, aux._buf, g._buf, outer, K,
                                              inner, logits, eps, dx._buf)
            return (dx,)
        record(loss, (output,), bw)
    return loss


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy between one-hot (or probability) targets and predictions, one loss per sample:
    -sum(target * log(p)) along `axis`, where p is softmax(output) with from_logits=True (one fused
    kernel, forward and backward) or output normalised by its sum and clipped to
    [eps, 1 - eps] (eps = config.epsilon(), 1e-7 by default). target and output must have the
    same shape."""
    op = "categorical_crossentropy"
    target, output = _loss_operands(op, target, output)
    if target.dtype != dtypes.FLOAT32:
        target = _m.cast(target, dtypes.FLOAT32)
    if target.shape != output.shape:
        raise ValueError(f"{op}: target of shape {target.shape} does not match output of shape "
                         f"{output.shape}; they must be equal (for integer class ids use "
                         "sparse_categorical_crossentropy)")
    a, outer, K, inner = _one_axis(op, output.shape, axis)
    shape = output.shape[:a] + output.shape[a + 1:]
    logits, eps = bool(from_logits), epsilon()
    loss = empty(shape, dtypes.FLOAT32, output.device)
    aux = empty(shape, dtypes.FLOAT32, output.device)
    output.device.kernels.xent_dense(output._buf, target._buf, outer, K, inner, logits, eps,
                                     loss._buf, aux._buf)
    if needs_grad(output, target):
        def bw(g, n):
            dx = empty(output.shape, dtypes.FLOAT32, output.device) if n[0] else None
            dt = empty(target.shape, dtypes.FLOAT32, target.device) if n[1] else None
            g.device.kernels.xent_dense_grad(output._buf, target._buf, aux._buf, g._buf, outer, K, inner,
                                             logits, eps, dx._buf if dx is not None else None,
                                             dt._buf if dt is not None else None)
            return dx, dt
        record(loss, (output, target), bw)
    return loss


def binary_crossentropy(target, output, from_logits=False):
    """Elementwise binary cross-entropy (no reduction), Keras's semantics: probabilities are
    clipped to [eps, 1 - eps] (eps = config.epsilon(), 1e-7 by default); with from_logits=True
    the stable form max(x, 0) - x * t + log(1 + exp(-|x|)) is used. target and output must have the same shape."""
    op = "binary_crossentropy"
    target, output = _loss_operands(op, target, output)
    if target.dtype != dtypes.FLOAT32:
        target = _m.cast(target, dtypes.FLOAT32)
    if target.shape != output.shape:
        raise ValueError(f"{op}: target of shape {target.shape} does not match output of shape "
                         f"{output.shape}; they must be equal")
    logits, eps = bool(from_logits), epsilon()
    loss = empty(output.shape, dtypes.FLOAT32, output.device)
    output.device.kernels.bce(target._buf, output._buf, logits, eps, loss._buf)
    if needs_grad(output, target):
        def bw(g, n):
            dx = empty(output.shape, dtypes.FLOAT32, output.device) if n[0] else None
            dt = empty(target.shape, dtypes.FLOAT32, target.device) if n[1] else None
            g.device.kernels.bce_grad(target._buf, output._buf, g._buf, logits, eps,
                                      dx._buf if dx is not None else None,
                                      dt._buf if dt is not None else None)
            return dx, dt
        record(loss, (output, target), bw)
    return loss


def one_hot(x, num_classes, axis=-1, dtype="float32", sparse=False):
    """One-hot encoding of class ids: a new axis of size num_classes at `axis` (default last).
    Float or bool ids are cast to int64 first (truncated, as Keras's TensorFlow and torch
    backends do). Ids outside [0, num_classes) give an all-zero vector (TensorFlow / JAX behaviour)."""
    if sparse:
        raise NotImplementedError("one_hot: sparse=True is not supported; use sparse=False")
    x = _as_tensor(x)
    if not dtypes.is_int(x.dtype):
        x = _m.cast(x, dtypes.INT64)
    K = validation.size(num_classes, "one_hot", "num_classes")
    nd = x.ndim + 1
    a = validation.integer(axis, "one_hot", "axis")
    if not -nd <= a < nd:
        raise ValueError(f"one_hot: axis {a} is out of range for a result with {nd} dimensions (ids of shape "
                         f"{x.shape}); expected {-nd} <= axis <= {nd - 1}")
    a %= nd
    shape = x.shape[:a] + (K,) + x.shape[a:]
    dt = dtypes.standardize(dtype or dtypes.FLOAT32, "one_hot")
    validation.check_alloc("one_hot", shape, dt, x.device)
    out = empty(shape, dt, x.device, op="one_hot")
    x.device.kernels.one_hot(x._buf, _pymath.prod(x.shape[:a]), K, _pymath.prod(x.shape[a:]), out._buf)
    return out


# ---- normalisation ------------------------------------------------------------------------------

def _channel_param(op, name, p, C, x, allow_none=True):
    if p is None:
        if allow_none:
            return None
        raise ValueError(f"{op}: {name} is required")
    p = _as_tensor(p)
    _require_f32(op, p, name)
    if p.dtype == dtypes.BFLOAT16:  # the kernels take float32 parameters (C values: cheap)
        p = _m.cast(p, dtypes.FLOAT32)
    check_same_device(op, x, p)
    if p.shape != (C,):
        raise ValueError(f"{op}: expected {name} of shape ({C},) (the size of the channel axis of x, "
                         f"whose shape is {x.shape}), received shape {p.shape}")
    return p


def batch_norm_train(x, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    """Training-mode batch normalisation (channels on `axis`, statistics over all other axes).

    Returns (y, batch_mean, batch_variance): y = (x - mean) / sqrt(var + epsilon) * gamma + beta,
    with the biased batch variance (as Keras's BatchNormalization uses for its moving variance).
    gamma / beta of shape (C,) or None. The backward pass for x, gamma and beta is one fused
    kernel; gradients through the returned mean and variance are supported too."""
    op = "batch_norm_train"
    x = _as_tensor(x)
    _require_f32(op, x, "x")
    a, outer, C, inner = _one_axis(op, x.shape, axis)
    gamma = _channel_param(op, "gamma", gamma, C, x)
    beta = _channel_param(op, "beta", beta, C, x)
    eps = validation.real(epsilon, op, "epsilon")
    k = x.device.kernels
    y = empty(x.shape, x.dtype, x.device)  # bfloat16 data gives bfloat16 (statistics in float32)
    mean = empty((C,), dtypes.FLOAT32, x.device)
    var = empty((C,), dtypes.FLOAT32, x.device)
    k.batch_norm_train(x._buf, gamma._buf if gamma is not None else None,
                       beta._buf if beta is not None else None, outer, C, inner, eps, y._buf, mean._buf,
                       var._buf)
    if needs_grad(x, *(p for p in (gamma, beta) if p is not None)):
        def bw(g, n):
            dx = empty(x.shape, x.dtype, x.device) if n[0] else None
            dg = empty((C,), dtypes.FLOAT32, x.device) if n[1] else None
            db = empty((C,), dtypes.FLOAT32, x.device) if n[2] else None
            g.device.kernels.batch_norm_train_grad(
                x._buf, gamma._buf if gamma is not None else None, mean._buf, var._buf, g._buf,
                outer, C, inner, eps, *(t._buf if t is not None else None for t in (dx, dg, db)))
            return dx, dg, db
        _record_some(y, (x, gamma, beta), bw)
        if needs_grad(x):
            kept = tuple(C if i == a else 1 for i in range(x.ndim))
            count = float(max(outer * inner, 1))
            record(mean, (x,), lambda g, n: (_m.broadcast_to(_view(_m.divide(g, count), kept), x.shape),))
            record(var, (x,), lambda g, n: (_m.multiply(_m.subtract(x, _view(mean, kept)),
                                                         _view(_m.multiply(g, 2.0 / count), kept)),))
    return y, mean, var


def _inference_bn_args(op, x, mean, variance, axis, offset, scale):
    """Checked arguments of the inference batch norm ops: (x, outer, C, inner, mean, variance,
    offset, scale), parameters of shape (C,) (offset and scale may be None)."""
    x = _as_tensor(x)
    _require_f32(op, x, "x")
    _, outer, C, inner = _one_axis(op, x.shape, axis)
    mean = _channel_param(op, "mean", mean, C, x, allow_none=False)
    variance = _channel_param(op, "variance", variance, C, x, allow_none=False)
    offset = _channel_param(op, "offset", offset, C, x)
    scale = _channel_param(op, "scale", scale, C, x)
    return x, outer, C, inner, mean, variance, offset, scale


def batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    """Inference batch normalisation (keras.ops.batch_normalization):
    (x - mean) / sqrt(variance + epsilon) * scale + offset, with mean, variance, offset and
    scale of shape (x.shape[axis],). Differentiable with respect to every tensor argument."""
    x, outer, C, inner, mean, variance, offset, scale = _inference_bn_args(
        "batch_normalization", x, mean, variance, axis, offset, scale)
    eps = validation.real(epsilon, "batch_normalization", "epsilon")
    y = empty(x.shape, dtypes.FLOAT32, x.device)
    sbuf = scale._buf if scale is not None else None
    x.device.kernels.batch_norm_infer(x._buf, mean._buf, variance._buf, sbuf,
                                      offset._buf if offset is not None else None, outer, C, inner, eps,
                                      y._buf)

    def bw(g, n):
        outs = [empty(x.shape, dtypes.FLOAT32, x.device) if n[0] else None]
        outs += [empty((C,), dtypes.FLOAT32, x.device) if n[i] else None for i in (1, 2, 3, 4)]
        dx, dm, dv, do, ds = outs
        g.device.kernels.batch_norm_infer_grad(
            x._buf, mean._buf, variance._buf, sbuf, g._buf, outer, C, inner, eps,
            *(t._buf if t is not None else None for t in (dx, dm, dv, ds, do)))
        return dx, dm, dv, do, ds
    _record_some(y, (x, mean, variance, offset, scale), bw)
    return y


def batch_normalization_relu(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3, max_value=None):
    """relu(batch_normalization(x, ...)), capped at `max_value` when given, in one pass over x:
    the inference BatchNormalization + ReLU fusion of models/fusion.py (not in ops). The same
    values as the two ops (relu clamps as max(y, 0), then min(., max_value)). It has no gradient
    and refuses to run while one would be recorded."""
    op = "batch_normalization_relu"
    x, outer, C, inner, mean, variance, offset, scale = _inference_bn_args(
        op, x, mean, variance, axis, offset, scale)
    if needs_grad(x, *(t for t in (mean, variance, offset, scale) if t is not None)):
        raise RuntimeError(f"{op}: this fused inference op has no gradient, and a tape is recording one of its "
                           "inputs; use batch_normalization followed by relu")
    hi = _pymath.inf if max_value is None else validation.real(max_value, op, "max_value")
    y = empty(x.shape, dtypes.FLOAT32, x.device)
    x.device.kernels.batch_norm_infer(x._buf, mean._buf, variance._buf,
                                      scale._buf if scale is not None else None,
                                      offset._buf if offset is not None else None, outer, C, inner,
                                      validation.real(epsilon, op, "epsilon"), y._buf, 0.0, hi)
    return y


def moments(x, axes, keepdims=False, synchronized=False):
    """(mean, variance) of x over `axes` (the biased variance, as keras.ops.moments).
    `synchronized=True` (statistics across replicas, TensorFlow only in Keras) is refused, as
    Keras's JAX backend refuses it."""
    if synchronized:
        raise NotImplementedError("moments: synchronized=True (statistics gathered across replicas) is not "
                                  "supported; lamina computes the moments of the tensor it is given, as Keras's JAX "
                                  "backend does with synchronized=False")
    x = _float_input("moments", x)
    axes = normalize_axes(axes, x.ndim, "moments", x.shape)
    _m._check_reduced("moments", x, axes)
    m = _m.mean(x, axis=axes, keepdims=True)
    v = _m.mean(_m.square(_m.subtract(x, m)), axis=axes, keepdims=keepdims)
    return (m if keepdims else reshape(m, v.shape)), v


def layer_norm(x, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    """Layer normalisation over `axis` (an int or a tuple of axes), as Keras's LayerNormalization:
    y = (x - mean) / sqrt(var + epsilon) * gamma + beta, statistics per position of the other
    axes, gamma / beta of shape [x.shape[a] for a in axes] or None. Adjacent axes (the usual case,
    e.g. the last one) run as one fused kernel forward and backward."""
    op = "layer_norm"
    x = _as_tensor(x)
    _require_f32(op, x, "x")
    if x.ndim == 0:
        raise ValueError(f"{op}: expected a tensor with at least 1 dimension, received shape ()")
    axes = normalize_axes(axis, x.ndim, op, x.shape)
    if not axes:
        raise ValueError(f"{op}: axis={axis!r} names no axis of a tensor of shape {x.shape}; give at least one")
    pshape = tuple(x.shape[i] for i in axes)
    params = []
    for name, p in (("gamma", gamma), ("beta", beta)):
        if p is not None:
            p = _as_tensor(p)
            _require_f32(op, p, name)
            check_same_device(op, x, p)
            if p.shape != pshape:
                raise ValueError(f"{op}: expected {name} of shape {pshape} (x's shape {x.shape} on axes "
                                 f"{axes}), received shape {p.shape}")
        params.append(p)
    gamma, beta = params
    eps = validation.real(epsilon, op, "epsilon")
    if axes != tuple(range(axes[0], axes[-1] + 1)):
        return _layer_norm_composed(x, gamma, beta, axes, eps)
    outer = _pymath.prod(x.shape[:axes[0]])
    R = _pymath.prod(pshape)
    inner = _pymath.prod(x.shape[axes[-1] + 1:])
    y = empty(x.shape, dtypes.FLOAT32, x.device)
    lanes = x.shape[:axes[0]] + x.shape[axes[-1] + 1:]
    mean = empty(lanes, dtypes.FLOAT32, x.device)
    rstd = empty(lanes, dtypes.FLOAT32, x.device)
    gbuf = gamma._buf if gamma is not None else None
    x.device.kernels.layer_norm(x._buf, gbuf, beta._buf if beta is not None else None, outer, R, inner,
                                eps, y._buf, mean._buf, rstd._buf)

    def bw(g, n):
        dx = empty(x.shape, dtypes.FLOAT32, x.device) if n[0] else None
        dg = empty(pshape, dtypes.FLOAT32, x.device) if n[1] else None
        db = empty(pshape, dtypes.FLOAT32, x.device) if n[2] else None
        g.device.kernels.layer_norm_grad(x._buf, gbuf, mean._buf, rstd._buf, g._buf, outer, R, inner,
                                         *(t._buf if t is not None else None for t in (dx, dg, db)))
        return dx, dg, db
    _record_some(y, (x, gamma, beta), bw)
    return y


def _layer_norm_composed(x, gamma, beta, axes, eps):
    """Layer norm over non-adjacent axes, from kernel-backed ops (gradients by composition)."""
    m = _m.mean(x, axis=axes, keepdims=True)
    d = _m.subtract(x, m)
    v = _m.mean(_m.square(d), axis=axes, keepdims=True)
    y = _m.multiply(d, _m.rsqrt(_m.add(v, eps)))
    bshape = tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim))
    if gamma is not None:
        y = _m.multiply(y, reshape(gamma, bshape))
    if beta is not None:
        y = _m.add(y, reshape(beta, bshape))
    return y


# ---- embedding ----------------------------------------------------------------------------------

def embedding_lookup(table, ids):
    """Rows of `table` (vocabulary, dim) picked by integer `ids` of any shape -> (*ids.shape, dim).

    Ids must lie in [0, vocabulary) (ValueError otherwise; negative ids are rejected). The table's
    gradient is sparse: an IndexedSlices holding the output gradient's rows and the ids (no dense
    (vocabulary, dim) tensor is built); the tape and the optimizers handle it, and it densifies by
    a C++ scatter-add wherever a tensor is needed."""
    op = "embedding_lookup"
    table, ids = _as_tensor(table), _as_tensor(ids)
    _require_f32(op, table, "table")
    if table.ndim != 2:
        raise ValueError(f"{op}: expected a table of shape (vocabulary, dim), received shape {table.shape}")
    if not dtypes.is_int(ids.dtype):
        raise TypeError(f"{op}: expected integer ids (int32 or int64), received {ids.dtype} with shape "
                        f"{ids.shape}; cast them with ops.cast(ids, 'int32')")
    check_same_device(op, table, ids)
    V, D = table.shape
    out = empty(ids.shape + (D,), dtypes.FLOAT32, table.device)
    table.device.kernels.embedding(table._buf, V, D, ids._buf, out._buf)
    if needs_grad(table):
        n_ids = _pymath.prod(ids.shape)

        def bw(g, n):  # the rows of g at the ids: a sparse gradient for the table
            return (IndexedSlices(_view(g, (n_ids, D)), _view(ids, (n_ids,)), table.shape),)
        record(out, (table,), bw)
    return out


from .convolution import *  # noqa: E402,F401,F403
from .convolution import __all__ as _conv_all  # noqa: E402

__all__ = __all__ + list(_conv_all)

"""Random tensors from a counter-based generator (Philox-4x32-10, in C++), and dropout.

Every draw is keyed by a (seed, counter) pair, so it depends only on that pair and the shape --
never on the thread count. `seed` follows Keras:

- an int gives a reproducible draw (the same as the first draw of `SeedGenerator(seed)`);
- a `SeedGenerator` yields a new (seed, counter) pair on each call, so repeated calls differ but a
  re-created generator repeats the sequence;
- None draws from the global generator, which `set_seed(seed)` re-seeds.

    lamina.ops.normal((2, 3), seed=1)        # the same values on every run
    gen = lamina.backend.random.SeedGenerator(7)
    a, b = ops.uniform((3,), seed=gen), ops.uniform((3,), seed=gen)   # a != b
"""
import math as _pymath
import random as _pyrandom
import threading

import numpy as np

from . import dtypes, validation
from .autodiff import needs_grad, record
from .math import _as_tensor
from .tensor import Tensor, empty

__all__ = ["SeedGenerator", "set_seed", "uniform", "normal", "truncated_normal", "randint",
           "categorical", "shuffle", "gamma", "beta", "binomial", "dropout"]

_MASK64 = (1 << 64) - 1


def _check_seed_value(seed, where):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{where}: expected an integer seed, received {seed!r} of type "
                        f"{type(seed).__name__}")
    return int(seed)


class SeedGenerator:
    """A stream of seeds for random ops: each `next()` returns a new (seed, counter) pair.

    Pass it as `seed=` to random ops (or to layers such as Dropout) so that successive calls
    draw different values while the whole sequence stays reproducible for a given seed.
    `SeedGenerator(None)` picks a seed from Python's `random` module, as Keras's does: random in
    each process, and reproduced after `keras.utils.set_random_seed` (which seeds that module), so
    the layers made with seed=None after it (random augmentations, dropout) draw the same values
    from run to run.
    """

    def __init__(self, seed=None, name=None, **kwargs):
        if seed is None:
            seed = _pyrandom.randint(1, int(1e9))   # Keras's make_default_seed
        self._seed = _check_seed_value(seed, "SeedGenerator")
        self._counter = 0
        self._lock = threading.Lock()
        self.name = name or "seed_generator"

    @property
    def seed(self):
        return self._seed

    @property
    def state(self):
        """(seed, counter): the pair the next draw will use."""
        return self._seed, self._counter

    def next(self, ordered=True):
        """The (seed, counter) pair for one draw; advances the counter."""
        with self._lock:
            c = self._counter
            self._counter += 1
        return self._seed & _MASK64, c & _MASK64

    def get_config(self):
        return {"seed": self._seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"SeedGenerator(seed={self._seed}, counter={self._counter})"


_global = None
_global_lock = threading.Lock()


def _global_generator():
    global _global
    if _global is None:
        with _global_lock:
            if _global is None:
                _global = SeedGenerator()
    return _global


def set_seed(seed):
    """Re-seeds the global generator used by random ops called with `seed=None`."""
    global _global
    seed = _check_seed_value(seed, "set_seed")
    with _global_lock:
        _global = SeedGenerator(seed)


def draw_seed(seed, op="random"):
    """The (seed, counter) key pair for one draw from an int, a SeedGenerator or None."""
    if seed is None:
        return _global_generator().next()
    if isinstance(seed, SeedGenerator):
        return seed.next()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{op}: seed must be an int, a SeedGenerator or None, received {seed!r} "
                        f"of type {type(seed).__name__}")
    return int(seed) & _MASK64, 0


def _shape(shape, op, dtype="float32"):
    shape = validation.shape(shape, op)
    validation.check_alloc(op, shape, dtype)
    return shape


def _float_dtype(dtype, op):
    dt = dtypes.standardize(dtype, op)
    if dt not in dtypes.FLOATS:  # bfloat16: the float32 draws, rounded (the same numbers as float32's)
        raise TypeError(f"{op}: expected a float dtype, received {dtype!r}"
                        + ("; use randint for integers" if dtypes.is_int(dt) else ""))
    return dt


def _scalar(v, name, op):
    if isinstance(v, Tensor):
        if v.size != 1:
            raise ValueError(f"{op}: {name} must be a scalar, received a tensor of shape {v.shape}")
        v = v.item()
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be a number, received {v!r}") from None
    if not _pymath.isfinite(v):
        raise ValueError(f"{op}: {name} must be finite, received {v}")
    return v


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    """Floats uniform in [minval, maxval)."""
    shape = _shape(shape, "uniform")
    dt = _float_dtype(dtype, "uniform")
    lo, hi = _scalar(minval, "minval", "uniform"), _scalar(maxval, "maxval", "uniform")
    if not lo < hi:
        raise ValueError(f"uniform: minval must be below maxval, received minval={lo}, maxval={hi}")
    key, ctr = draw_seed(seed, "uniform")
    out = empty(shape, dt)
    out.device.kernels.random_uniform(key, ctr, lo, hi, out._buf)
    if dt == dtypes.BFLOAT16:  # a draw just below maxval may round up to it: keep [minval, maxval)
        from .math import minimum
        out = minimum(out, _bf16_below(hi))
    return out


def _bf16_below(v):
    """The largest bfloat16 value below v (v is a float32 number)."""
    bits = int(np.array(v, np.float32).view(np.uint32)) >> 16  # v truncated toward zero to bfloat16
    b = np.array([bits << 16], np.uint32).view(np.float32)[0]
    if b >= v:  # v itself is a bfloat16 value: the next one below it
        bits = bits - 1 if v > 0 else (bits + 1 if v < 0 else 0x8001)
        b = np.array([bits << 16], np.uint32).view(np.float32)[0]
    return float(b)


def _normal(op, shape, mean, stddev, dtype, seed, truncated):
    shape = _shape(shape, op)
    dt = _float_dtype(dtype, op)
    m, s = _scalar(mean, "mean", op), _scalar(stddev, "stddev", op)
    if s < 0:
        raise ValueError(f"{op}: stddev must be >= 0, received {s}")
    key, ctr = draw_seed(seed, op)
    out = empty(shape, dt)
    out.device.kernels.random_normal(key, ctr, m, s, truncated, out._buf)
    return out


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Floats from a normal distribution N(mean, stddev^2)."""
    return _normal("normal", shape, mean, stddev, dtype, seed, False)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal values with those more than two standard deviations from the mean drawn again
    (as Keras / TensorFlow do): every value lies within mean +- 2 * stddev."""
    return _normal("truncated_normal", shape, mean, stddev, dtype, seed, True)


def randint(shape, minval, maxval, dtype="int32", seed=None):
    """Integers uniform in [minval, maxval)."""
    shape = _shape(shape, "randint")
    dt = dtypes.standardize(dtype, "randint")
    if not dtypes.is_int(dt):
        raise TypeError(f"randint: expected an integer dtype (int32 or int64), received {dtype!r}; "
                        "use uniform for floats")
    lo, hi = validation.integer(minval, "randint", "minval"), validation.integer(maxval, "randint", "maxval")
    if not lo < hi:
        raise ValueError(f"randint: minval must be below maxval, received minval={lo}, maxval={hi}")
    bits = 32 if dt == dtypes.INT32 else 64
    if lo < -(1 << (bits - 1)) or hi - 1 > (1 << (bits - 1)) - 1:
        raise ValueError(f"randint: range [{lo}, {hi}) does not fit {dt}; use dtype='int64'")
    key, ctr = draw_seed(seed, "randint")
    out = empty(shape, dt)
    out.device.kernels.random_randint(key, ctr, lo, hi, out._buf)
    return out


def categorical(logits, num_samples, dtype="int32", seed=None):
    """Class ids drawn from softmax(logits): logits (batch, num_classes) -> (batch, num_samples)."""
    x = _as_tensor(logits)
    if x.dtype == dtypes.BFLOAT16:
        from .math import cast
        x = cast(x, dtypes.FLOAT32)
    if x.dtype != dtypes.FLOAT32:
        raise TypeError(f"categorical: expected float32 logits, received {x.dtype} with shape {x.shape}")
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"categorical: expected logits of shape (batch, num_classes) with "
                         f"num_classes >= 1, received shape {x.shape}")
    n = validation.size(num_samples, "categorical", "num_samples")
    dt = dtypes.standardize(dtype, "categorical")
    if not dtypes.is_int(dt):
        raise TypeError(f"categorical: expected an integer dtype, received {dtype!r}")
    key, ctr = draw_seed(seed, "categorical")
    out = empty((x.shape[0], n), dt, x.device)
    x.device.kernels.random_categorical(x._buf, x.shape[0], x.shape[1], key, ctr, n, out._buf)
    return out


def shuffle(x, axis=0, seed=None):
    """A random permutation of x along `axis` (one permutation for all other positions).
    Not differentiable."""
    x = _as_tensor(x)
    if x.ndim == 0:
        raise ValueError("shuffle: expected a tensor with at least 1 dimension, received shape ()")
    a = validation.axis(axis, x.ndim, "shuffle", shape=x.shape)
    outer = _pymath.prod(x.shape[:a])
    inner = _pymath.prod(x.shape[a + 1:])
    key, ctr = draw_seed(seed, "shuffle")
    out = empty(x.shape, x.dtype, x.device)
    if x.size == 0:
        return out
    validation.check_alloc("shuffle", (x.shape[a],), dtypes.INT64, x.device)   # the kernel's permutation
    x.device.kernels.random_shuffle(x._buf, outer, x.shape[a], inner, key, ctr, out._buf)
    return out


def _parameter(v, name, op, shape, check, rule):
    """`v` (a number or array-like broadcastable to `shape`) as a float32 tensor of `shape`, every
    value of which passes `check` (a numpy predicate), else ValueError quoting `rule`."""
    from .math import broadcast_to, cast
    from .tensor import convert_to_numpy, convert_to_tensor
    t = v if isinstance(v, Tensor) else convert_to_tensor(np.asarray(v, np.float32))
    if t.dtype != dtypes.FLOAT32:
        t = cast(t, dtypes.FLOAT32)
    host = convert_to_numpy(t)
    bad = ~check(host)
    if bad.any():
        raise ValueError(f"{op}: every value of {name} must be {rule}; received {name}={float(host[bad].flat[0])!r}"
                         + (f" (in an array of shape {host.shape})" if host.ndim else ""))
    try:
        return broadcast_to(t, shape)
    except ValueError:
        raise ValueError(f"{op}: {name} of shape {t.shape} does not broadcast to the sample shape {shape}") from None


def _float_out(out, dt):
    if dt == dtypes.BFLOAT16:
        from .math import cast
        return cast(out, dt)
    return out


def _gamma_draw(alpha, key, ctr, salt, log_space):
    out = empty(alpha.shape, dtypes.FLOAT32, alpha.device)
    alpha.device.kernels.random_gamma(key, ctr, salt, alpha._buf, log_space, out._buf)
    return out


def _positive(a):
    return np.isfinite(a) & (a > 0)


def gamma(shape, alpha, dtype=None, seed=None):
    """Samples of the Gamma(alpha, 1) distribution (mean alpha), `alpha` a positive number or
    values broadcastable to `shape` (Marsaglia and Tsang's method, csrc/random_dists.h)."""
    shape = _shape(shape, "gamma")
    dt = _float_dtype(dtype, "gamma")
    a = _parameter(alpha, "alpha", "gamma", shape, _positive, "a finite number above 0")
    key, ctr = draw_seed(seed, "gamma")
    return _float_out(_gamma_draw(a, key, ctr, 0, False), dt)


def beta(shape, alpha, beta, dtype=None, seed=None):
    """Samples of the Beta(alpha, beta) distribution in [0, 1], X / (X + Y) for X ~ Gamma(alpha)
    and Y ~ Gamma(beta) (taken as sigmoid(log X - log Y), exact for small alpha and beta too)."""
    from .math import sigmoid, subtract
    shape = _shape(shape, "beta")
    dt = _float_dtype(dtype, "beta")
    a = _parameter(alpha, "alpha", "beta", shape, _positive, "a finite number above 0")
    b = _parameter(beta, "beta", "beta", shape, _positive, "a finite number above 0")
    key, ctr = draw_seed(seed, "beta")
    return _float_out(sigmoid(subtract(_gamma_draw(a, key, ctr, 0, True), _gamma_draw(b, key, ctr, 1, True))), dt)


def binomial(shape, counts, probabilities, dtype=None, seed=None):
    """Samples of the Binomial(counts, probabilities) distribution (successes in `counts` trials),
    as floats; `counts` non-negative whole numbers and `probabilities` in [0, 1], each a number or
    values broadcastable to `shape` (csrc/random_dists.h: waiting times, or Hormann's BTRS)."""
    shape = _shape(shape, "binomial")
    dt = _float_dtype(dtype, "binomial")
    n = _parameter(counts, "counts", "binomial", shape,
                   lambda v: np.isfinite(v) & (v >= 0) & (v == np.floor(v)), "a whole number >= 0")
    p = _parameter(probabilities, "probabilities", "binomial", shape, lambda v: (v >= 0) & (v <= 1),
                   "a probability in [0, 1]")
    key, ctr = draw_seed(seed, "binomial")
    out = empty(shape, dtypes.FLOAT32, n.device)
    n.device.kernels.random_binomial(key, ctr, n._buf, p._buf, out._buf)
    return _float_out(out, dt)


def dropout(inputs, rate, noise_shape=None, seed=None):
    """Zeroes each element of `inputs` (x below) with probability `rate` and scales the kept ones
    by 1 / (1 - rate).

    The keep mask is drawn in C++ and kept for the backward pass. `noise_shape` (same rank as x,
    None entries taken from x.shape) draws one mask value per position of that shape, broadcast
    over x: e.g. (batch, 1, channels) drops whole channels for every timestep. rate 0 returns x.
    """
    x = _as_tensor(inputs)
    if x.dtype not in dtypes.FLOATS:
        raise TypeError(f"dropout: expected a float32 tensor, received {x.dtype} with shape {x.shape}; "
                        "cast it with ops.cast(x, 'float32')")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise TypeError(f"dropout: rate must be a number, received {rate!r}") from None
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must be in [0, 1), received {rate}; it is the fraction of "
                         "inputs to drop")
    ns = None
    if noise_shape is not None:
        if isinstance(noise_shape, (list, tuple)):
            ns = tuple(noise_shape)
        else:   # a shape given as an int, an array or a tensor
            ns = validation.dims(noise_shape, "dropout", "noise_shape")
        if len(ns) != x.ndim:
            raise ValueError(f"dropout: noise_shape {ns} must have the rank of x, whose shape is {x.shape}")
        ns = tuple(x.shape[i] if d is None else validation.integer(d, "dropout", "noise_shape")
                   for i, d in enumerate(ns))
        for d, xd in zip(ns, x.shape):
            if d != xd and d != 1:
                raise ValueError(f"dropout: noise_shape {ns} does not broadcast to x's "
                                 f"shape {x.shape}; each entry must be 1, None or x's size")
    if rate == 0.0:
        return x
    key, ctr = draw_seed(seed, "dropout")
    k = x.device.kernels
    if ns is None or ns == x.shape:
        out = empty(x.shape, dtypes.FLOAT32, x.device)
        mask = empty(x.shape, dtypes.BOOL, x.device)
        k.dropout(x._buf, key, ctr, rate, out._buf, mask._buf)
        if needs_grad(x):
            scale = 1.0 / (1.0 - rate)

            def bw(g, n):
                r = empty(g.shape, g.dtype, g.device)
                g.device.kernels.dropout_grad(g._buf, mask._buf, scale, r._buf)
                return (r,)
            record(out, (x,), bw)
        return out
    from .math import multiply
    mask = empty(ns, dtypes.FLOAT32, x.device)
    k.dropout_mask(key, ctr, rate, mask._buf)
    return multiply(x, mask)

"""keras.ops names that complete the numpy and math families: `cdist` (pairwise Euclidean
distances), `corrcoef` (Pearson correlation matrix), `fabs`, `view_as_real` (of lamina's real
tensors) and `vectorize` (numpy.vectorize over lamina ops). Composed from existing ops, so
gradients flow through them."""
import functools
import re

import numpy as np

from . import dtypes
from . import math as _m
from .linalg import matmul
from .manipulation import diagonal, expand_dims, reshape, stack, transpose, unstack
from .math import _as_tensor
from .tensor import Tensor, convert_to_tensor

__all__ = ["cdist", "corrcoef", "fabs", "view_as_real", "vectorize"]


def _float(x, op):
    x = _as_tensor(x, op)
    return x if x.dtype == dtypes.FLOAT32 else _m.cast(x, dtypes.FLOAT32)


def cdist(x, y):
    """Euclidean distances between the rows of x (..., m, d) and of y (..., n, d): (..., m, n),
    the leading (batch) dimensions broadcast. A zero distance has gradient 0 (sqrt's subgradient;
    Keras's JAX backend gives NaN there)."""
    op = "cdist"
    x, y = _float(x, op), _float(y, op)
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"{op}: inputs must have rank >= 2 ((..., m, d) and (..., n, d)), received shapes "
                         f"x.shape={x.shape}, y.shape={y.shape}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"{op}: the last dimension (the vector length) of x and y must match, received shapes "
                         f"x.shape={x.shape}, y.shape={y.shape}")
    try:
        np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except ValueError:
        raise ValueError(f"{op}: the batch dimensions of x and y must broadcast, received shapes x.shape={x.shape}, "
                         f"y.shape={y.shape}") from None
    diff = _m.subtract(expand_dims(x, -2), expand_dims(y, -3))
    d2 = _m.sum(_m.square(diff), axis=-1)
    positive = _m.greater(d2, 0.0)
    return _m.where(positive, _m.sqrt(_m.where(positive, d2, 1.0)), 0.0)


def corrcoef(x):
    """Pearson correlation coefficients of the rows of x (N variables, D observations each):
    (N, N), clipped to [-1, 1] (numpy.corrcoef); a 1-D x is one variable (a scalar 1.0). A
    variable with zero variance gives NaN, as numpy's."""
    op = "corrcoef"
    x = _float(x, op)
    if x.ndim not in (1, 2):
        raise ValueError(f"{op}: expected a 1-D or 2-D tensor (variables in rows, observations in columns), "
                         f"received shape {x.shape}")
    one = x.ndim == 1
    if one:
        x = expand_dims(x, 0)
    if x.shape[1] == 0:
        raise ValueError(f"{op}: x of shape {x.shape} has no observations")
    centred = _m.subtract(x, _m.mean(x, axis=1, keepdims=True))
    cov = _m.divide(matmul(centred, transpose(centred)), float(x.shape[1] - 1))
    std = _m.sqrt(diagonal(cov))
    c = _m.divide(_m.divide(cov, expand_dims(std, 1)), expand_dims(std, 0))
    c = _m.clip(c, -1.0, 1.0)
    return reshape(c, ()) if one else c


def fabs(x):
    """Absolute values as float32 (integer and bool inputs are promoted, as Keras's fabs)."""
    return _m.abs(_float(x, "fabs"))


def view_as_real(x):
    """keras.ops.view_as_real: the real and imaginary parts stacked on a new last axis, float32.
    lamina tensors are real (complex data cannot be converted to a tensor), so the result is
    (x, 0) for every element."""
    x = _float(x, "view_as_real")
    return stack([x, _m.zeros_like(x)], axis=-1)


# ---- vectorize -------------------------------------------------------------------------------------------

_DIM = r"\w+"
_CORE = rf"\((?:{_DIM}(?:,{_DIM})*)?\)"
_SIGNATURE = re.compile(rf"^{_CORE}(?:,{_CORE})*->{_CORE}(?:,{_CORE})*$")


def _parse_signature(signature):
    if not isinstance(signature, str) or not _SIGNATURE.match(signature.replace(" ", "")):
        raise ValueError(f"vectorize: not a valid generalized ufunc signature: signature={signature!r}; expected "
                         "e.g. '(m,n),(n)->(m)'")
    ins, outs = signature.replace(" ", "").split("->")
    parse = lambda part: [tuple(re.findall(_DIM, arg)) for arg in re.findall(_CORE, part)]  # noqa: E731
    return parse(ins), parse(outs)


def _core_sizes(shapes, cores, sizes, what):
    for i, (shape, core) in enumerate(zip(shapes, cores)):
        if len(shape) < len(core) if what == "input" else len(shape) != len(core):
            raise ValueError(f"vectorize: {what} {i} of shape {shape} does not have the core dimensions {core} of "
                             "the signature")
        for name, size in zip(core, shape[len(shape) - len(core):]):
            if sizes.setdefault(name, size) != size:
                raise ValueError(f"vectorize: inconsistent size for core dimension {name!r}: {size} ({what} {i}) vs "
                                 f"{sizes[name]}")


def vectorize(pyfunc, *, excluded=None, signature=None):
    """numpy.vectorize over lamina ops (keras.ops.vectorize): the returned function broadcasts its
    positional arguments and calls `pyfunc` on each element (or, with `signature` such as
    '(m,n),(n)->(m)', on each core-dimension slice), stacking the results.

    excluded: positions (ints) or keyword names (strs) of arguments passed to pyfunc unchanged;
    other keyword arguments are not vectorized and must be listed there. Without a signature
    pyfunc may return any shape, the same for every element (a tuple for several outputs).
    lamina has no vmap: like numpy.vectorize (whose documentation says it is 'provided primarily
    for convenience, not for performance') this calls pyfunc once per element in a Python loop;
    gradients flow through the slices and the stacking."""
    if not callable(pyfunc):
        raise ValueError(f"vectorize: expected argument `pyfunc` to be a callable, received pyfunc={pyfunc!r}")
    excluded = frozenset() if excluded is None else excluded
    if isinstance(excluded, (str, int)) or not all(
            isinstance(e, str) or (isinstance(e, (int, np.integer)) and not isinstance(e, bool)) for e in excluded):
        raise TypeError(f"vectorize: `excluded` must be a set of argument positions (ints) or names (strs), received "
                        f"excluded={excluded!r}")
    excluded = frozenset(int(e) if not isinstance(e, str) else e for e in excluded)
    if any(isinstance(e, int) and e < 0 for e in excluded):
        raise ValueError(f"vectorize: `excluded` positions must be >= 0, received excluded={set(excluded)}")
    cores = None if signature is None else _parse_signature(signature)

    @functools.wraps(pyfunc)
    def wrapped(*args, **kwargs):
        loose = [k for k in kwargs if k not in excluded]
        if loose:
            raise TypeError(f"vectorize: keyword arguments {loose} are not vectorized; pass them positionally or name "
                            "them in `excluded` to pass them unchanged")
        static = {i: a for i, a in enumerate(args) if i in excluded or (a is None and cores is None)}
        dynamic = [convert_to_tensor(a) if not isinstance(a, Tensor) else a
                   for i, a in enumerate(args) if i not in static]
        in_cores = [()] * len(dynamic) if cores is None else cores[0]
        if len(in_cores) != len(dynamic):
            raise TypeError(f"vectorize: the signature {signature!r} takes {len(in_cores)} vectorized arguments, "
                            f"received {len(dynamic)}")
        sizes = {}
        _core_sizes([t.shape for t in dynamic], in_cores, sizes, "input")
        loops = [t.shape[:t.ndim - len(c)] for t, c in zip(dynamic, in_cores)]
        try:
            loop = tuple(np.broadcast_shapes(*loops)) if loops else ()
        except ValueError:
            raise ValueError(f"vectorize: the inputs' loop dimensions {loops} do not broadcast together") from None
        n = int(np.prod(loop, dtype=np.int64))
        if n == 0:
            raise ValueError(f"vectorize: the inputs broadcast to the empty loop shape {loop}; with no element to "
                             "call pyfunc on, the result's shape cannot be known")
        slices = [unstack(reshape(_m.broadcast_to(t, loop + t.shape[t.ndim - len(c):]),
                                  (n,) + t.shape[t.ndim - len(c):]), axis=0) for t, c in zip(dynamic, in_cores)]
        results = []
        for i in range(n):
            it = iter(s[i] for s in slices)
            call = [static[j] if j in static else next(it) for j in range(len(args))]
            out = pyfunc(*call, **kwargs)
            many = isinstance(out, tuple)
            outs = [o if isinstance(o, Tensor) else convert_to_tensor(o) for o in (out if many else (out,))]
            if cores is not None:
                if len(cores[1]) > 1 and not many:
                    raise TypeError(f"vectorize: pyfunc must return a tuple of {len(cores[1])} outputs for the "
                                    f"signature {signature!r}, returned {type(out).__name__}")
                if len(outs) != len(cores[1]):
                    raise TypeError(f"vectorize: pyfunc returned {len(outs)} outputs, the signature {signature!r} "
                                    f"has {len(cores[1])}")
                _core_sizes([o.shape for o in outs], cores[1], dict(sizes), "output")
            if results and (len(outs) != len(results[0]) or [o.shape for o in outs] != [r.shape for r in results[0]]):
                raise ValueError(f"vectorize: pyfunc returned outputs of shapes {[o.shape for o in outs]} for element "
                                 f"{i} but {[r.shape for r in results[0]]} for element 0; every call must return the "
                                 "same shapes")
            results.append(outs)
        stacked = tuple(reshape(stack([r[k] for r in results]), loop + results[0][k].shape)
                        for k in range(len(results[0])))
        return stacked if isinstance(out, tuple) else stacked[0]

    return wrapped

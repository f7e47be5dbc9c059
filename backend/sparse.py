"""IndexedSlices: a sparse row gradient (TensorFlow's type of the same name).

An embedding lookup's gradient touches only the rows that were looked up, so its backward
returns `IndexedSlices(values, indices, dense_shape)`: row `indices[i]` of a tensor of shape
`dense_shape` receives `values[i]`; repeated indices add up. The tape accumulates several of them
by concatenation (and densifies when one meets a dense gradient), `GradientTape.gradient`
returns them for such variables, and the optimizers apply them row by row in C++ without ever
building the dense (vocabulary x dim) gradient.

Where a Tensor is expected (`ops.*`, `convert_to_tensor`, `Variable.assign_sub`, `lr * g`,
`np.asarray(g)`), an IndexedSlices is densified by a C++ scatter-add, so user code written for
dense gradients keeps working.
"""
import math as _pymath

from . import dtypes
from .tensor import Tensor, empty

__all__ = ["IndexedSlices"]


class IndexedSlices:
    """Rows `values[i]` (n, *row_shape) of a tensor of shape `dense_shape` = (rows, *row_shape),
    at row ids `indices[i]` (int32 or int64, shape (n,)); repeated ids add up.

        g = tape.gradient(loss, embedding.embeddings)   # IndexedSlices for a lookup table
        g.indices, g.values, g.dense_shape
        dense = ops.convert_to_tensor(g)                 # the (rows, dim) tensor
    """

    __slots__ = ("values", "indices", "dense_shape", "_unique")
    _is_indexed_slices = True
    __array_ufunc__ = None      # numpy defers `array op g` to g's own operators
    __array_priority__ = 1001

    def __init__(self, values, indices, dense_shape, _unique=False):
        from .math import _as_tensor
        values, indices = _as_tensor(values), _as_tensor(indices)
        dense_shape = tuple(int(d) for d in dense_shape)
        where = "IndexedSlices"
        if indices.ndim != 1 or not dtypes.is_int(indices.dtype):
            raise TypeError(f"{where}: expected indices of shape (n,) and dtype int32 or int64, received shape "
                            f"{indices.shape} and dtype {indices.dtype}")
        if values.dtype != dtypes.FLOAT32:
            raise TypeError(f"{where}: expected float32 values, received {values.dtype} with shape {values.shape}")
        if len(dense_shape) < 1 or values.shape != indices.shape + dense_shape[1:]:
            raise ValueError(f"{where}: values of shape {values.shape} do not match indices of shape {indices.shape} "
                             f"and dense_shape {dense_shape}; expected values of shape "
                             f"{indices.shape + dense_shape[1:]}")
        if values.device is not indices.device:
            raise ValueError(f"{where}: values are on {values.device.name} but indices on {indices.device.name}; "
                             "put both on one device")
        self.values, self.indices, self.dense_shape = values, indices, dense_shape
        self._unique = _unique      # indices distinct and increasing (int64), as deduplicate() makes them

    # ---- tensor-like attributes ----------------------------------------------------------------
    @property
    def shape(self):
        return self.dense_shape

    @property
    def ndim(self):
        return len(self.dense_shape)

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def device(self):
        return self.values.device

    @property
    def row_size(self):
        return _pymath.prod(self.dense_shape[1:])

    def to_dense(self):
        """The dense tensor of shape `dense_shape` (zeros, then a C++ scatter-add of the rows)."""
        out = empty(self.dense_shape, dtypes.FLOAT32, self.device)
        self.add_into(out, overwrite=True)
        return out

    def add_into(self, out, overwrite=False):
        """out += the rows scattered to their indices (out = that with overwrite), in C++."""
        self.device.kernels.embedding_scatter_add(out._buf, self.dense_shape[0], self.row_size, self.indices._buf,
                                                  self.values._buf, overwrite)

    def numpy(self):
        return self.to_dense().numpy()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a.astype(dtype) if dtype is not None else a

    def to(self, device):
        """A copy on another device (indices and values moved together)."""
        from .device import get_device
        dev = get_device(device)
        if dev is self.device:
            return self
        return IndexedSlices(self.values.to(dev), self.indices.to(dev), self.dense_shape, self._unique)

    def __repr__(self):
        return (f"IndexedSlices(indices shape={self.indices.shape}, values shape={self.values.shape}, "
                f"dense_shape={self.dense_shape}, device={self.device.name})")

    def __len__(self):
        return self.dense_shape[0]


class OuterProducts:
    """A weight gradient kept as a sum of products a_i^T @ g_i (a_i: (rows_i, K), g_i: (rows_i, N)),
    formed only when it is read: matmul's backward gives one for its 2-D right operand, and
    gradients of a weight used several times (micro-batches, shared layers) accumulate by
    collecting the pairs, so they cost one GEMM over all the rows at the end instead of one
    (K, N) product and one (K, N) addition per use. Internal to backprop: every gradient handed
    to an op's backward function or returned by GradientTape.gradient is dense."""

    __slots__ = ("pairs", "shape")
    _is_outer_products = True

    def __init__(self, pairs, shape):
        self.pairs, self.shape = list(pairs), tuple(shape)

    @property
    def device(self):
        return self.pairs[0][0].device

    @property
    def dtype(self):
        return dtypes.FLOAT32

    @property
    def ndim(self):
        return len(self.shape)

    def to_dense(self):
        out = empty(self.shape, dtypes.FLOAT32, self.device)
        self.add_into(out, overwrite=True)
        return out

    def add_into(self, out, overwrite=False):
        """out += the sum of the products (out = it with overwrite). Either one GEMM per pair, each
        adding into out, or one GEMM over the pairs' rows copied together, whichever moves less
        memory: adding re-reads out once per extra pair, stacking copies every row."""
        from .manipulation import concatenate
        pairs = self.pairs
        kd, n = out.shape[-2], out.shape[-1]
        if kd == 0 or n == 0:  # an empty gradient: nothing to form
            return
        rows = sum(a.shape[0] for a, _ in pairs)
        if len(pairs) > 1 and rows * (kd + n) < (len(pairs) - 1) * kd * n:
            pairs = [(concatenate([a for a, _ in pairs]), concatenate([g for _, g in pairs]))]
        k = out.device.kernels
        for i, (a, g) in enumerate(pairs):
            if a.dtype == g.dtype == dtypes.BFLOAT16:  # mixed precision: bfloat16 products summed in float32
                k.matmul(a._buf, a.shape, g._buf, g.shape, out._buf, out.shape, True, False,
                         not (overwrite and i == 0))
                continue
            k.gemm(True, False, kd, n, a.shape[0], 1.0, a._buf, g._buf, 0.0 if overwrite and i == 0 else 1.0,
                   out._buf, kd, n, n)


def is_outer_products(x):
    return getattr(x, "_is_outer_products", False)


def _dense_operator(name):
    def op(self, *args):
        return getattr(self.to_dense(), name)(*args)
    op.__name__ = name
    op.__doc__ = f"Densifies, then applies Tensor.{name}."
    return op


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__neg__", "__pow__", "__matmul__", "__rmatmul__", "__getitem__", "sum", "mean", "max", "min",
              "astype"):
    setattr(IndexedSlices, _name, _dense_operator(_name))


def is_indexed_slices(x):
    return isinstance(x, IndexedSlices)


def densify(x):
    """A Tensor for a Tensor or IndexedSlices."""
    return x.to_dense() if isinstance(x, IndexedSlices) else x


def deduplicate(s):
    """The same gradient with distinct, increasing int64 indices: rows sharing an id are summed in
    C++ (a sort of the positions by id, then a segment sum in position order)."""
    if s._unique:
        return s
    k = s.device.kernels
    n = s.indices.shape[0]
    perm = empty((n,), dtypes.INT64, s.device)
    u = k.sparse_sort(s.indices._buf, s.dense_shape[0], perm._buf)
    idx = empty((u,), dtypes.INT64, s.device)
    vals = empty((u,) + s.dense_shape[1:], dtypes.FLOAT32, s.device)
    k.sparse_segment_sum(s.indices._buf, s.values._buf, s.row_size, perm._buf, idx._buf, vals._buf)
    return IndexedSlices(vals, idx, s.dense_shape, _unique=True)


def with_values(s, values):
    """The same indices with new values (e.g. clipped)."""
    return IndexedSlices(values, s.indices, s.dense_shape, s._unique)


def _check_compatible(a, b, what):
    if a.shape != b.shape:
        raise ValueError(f"{what}: cannot add gradients of shapes {a.shape} and {b.shape}")
    if a.device is not b.device:
        raise ValueError(f"{what}: gradients on {a.device.name} and {b.device.name}; move one with .to(...)")


def add(a, b):
    """a + b for gradients that may be sparse: two IndexedSlices concatenate (still sparse); an
    IndexedSlices and a dense tensor give a dense tensor (a copy of the dense one with the rows
    scatter-added in C++); two dense tensors add."""
    from .math import add as _dense_add
    from .manipulation import concatenate
    oa, ob = is_outer_products(a), is_outer_products(b)
    if oa and ob and a.shape == b.shape and a.device is b.device:
        if type(a) is OuterProducts and type(b) is OuterProducts:
            return OuterProducts(a.pairs + b.pairs, a.shape)
        merged = a.merge(b) if hasattr(a, "merge") else None  # other deferred products (backend/rnn.py)
        if merged is not None:
            return merged
    if oa or ob:
        a, b = (a.to_dense() if oa else a), (b.to_dense() if ob else b)
    sa, sb = isinstance(a, IndexedSlices), isinstance(b, IndexedSlices)
    if not sa and not sb:
        return _dense_add(a, b)
    _check_compatible(a, b, "gradient accumulation")
    if sa and sb:
        ia, ib = a.indices, b.indices
        if ia.dtype != ib.dtype:
            from .math import cast
            ia, ib = cast(ia, dtypes.INT64), cast(ib, dtypes.INT64)
        return IndexedSlices(concatenate([a.values, b.values]), concatenate([ia, ib]), a.dense_shape)
    dense, sp = (b, a) if sa else (a, b)
    if dense.dtype != dtypes.FLOAT32:
        raise TypeError(f"gradient accumulation: expected a float32 dense gradient, received {dense.dtype}")
    out = empty(dense.shape, dtypes.FLOAT32, dense.device)
    k = dense.device.kernels
    k.copy(dense._buf, out._buf)
    k.embedding_scatter_add(out._buf, sp.dense_shape[0], sp.row_size, sp.indices._buf, sp.values._buf, False)
    return out

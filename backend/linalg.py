"""Matrix products (numpy's linalg family): matmul with batch broadcasting, through sgemm."""
from . import dtypes, sparse as _sparse
from .autodiff import needs_grad, record
from .math import _as_tensor, add, broadcast_shapes, check_same_device, unbroadcast
from .tensor import Tensor, empty


def _mm(a, b, ta=False, tb=False):
    """a @ b with optional transposes of the last two dims (no copies), batch dims broadcast."""
    m = a.shape[-1] if ta else a.shape[-2]
    k = a.shape[-2] if ta else a.shape[-1]
    kb = b.shape[-1] if tb else b.shape[-2]
    n = b.shape[-2] if tb else b.shape[-1]
    if k != kb:
        raise ValueError(f"matmul: inner dimensions differ: a has shape {a.shape}, b has shape {b.shape} "
                         f"({k} vs {kb}); a's last dimension must equal b's second-to-last")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], "matmul") if len(a.shape) > 2 or len(b.shape) > 2 else ()
    shape = batch + (m, n)
    out = empty(shape, a.dtype, a.device)
    a.device.kernels.matmul(a._buf, a.shape, b._buf, b.shape, out._buf, shape, ta, tb, False)
    return out


def _view(t, shape):
    return Tensor(t._buf, shape, t.dtype, t.device)


def matmul(x1, x2):
    """Matrix product with numpy semantics: 1-D operands are promoted and the added dimension
    removed; leading batch dimensions broadcast."""
    a, b = _as_tensor(x1), _as_tensor(x2)
    for t, name in ((a, "x1"), (b, "x2")):
        if t.dtype not in dtypes.FLOATS:
            raise TypeError(f"matmul: expected float32 operands (or bfloat16), {name} is {t.dtype} with shape "
                            f"{t.shape}; cast it with ops.cast(x, 'float32')")
    if a.dtype != b.dtype:  # bfloat16 with float32: float32, as Keras / JAX promote
        from .math import cast
        a, b = cast(a, dtypes.FLOAT32), cast(b, dtypes.FLOAT32)
        if t.ndim == 0:
            raise ValueError(f"matmul: {name} is a scalar (shape ()); use multiply for scalars")
    check_same_device("matmul", a, b)
    squeeze_m = a.ndim == 1
    squeeze_n = b.ndim == 1
    a2 = _view(a, (1,) + a.shape) if squeeze_m else a
    b2 = _view(b, b.shape + (1,)) if squeeze_n else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: inner dimensions differ: x1 has shape {a.shape}, x2 has shape {b.shape} "
                         f"({a2.shape[-1]} vs {b2.shape[-2]})")
    # (..., M, K) @ (K, N): one GEMM over all rows
    if b2.ndim == 2 and a2.ndim > 2:
        lead = a2.shape[:-1]
        rows = 1
        for d in lead:
            rows *= d
        out = _view(_mm(_view(a2, (rows, a2.shape[-1])), b2), lead + (b2.shape[-1],))
    else:
        out = _mm(a2, b2)
    final = out.shape
    if squeeze_m:
        final = final[:-2] + final[-1:]
    if squeeze_n:
        final = final[:-1]
    if final != out.shape:
        out = _view(out, final)
    if needs_grad(a, b):
        def bw(g, n):
            g2 = _view(g, out_shape_full)
            ga = gb = None
            if n[0]:
                ga = _mm(g2, b2, tb=True)
                ga = _view(unbroadcast(ga, a2.shape), a.shape)
            if n[1]:
                if b2.ndim == 2 and a2.ndim >= 2 and not squeeze_n:  # formed when read (sparse.OuterProducts)
                    rows = g2.size // g2.shape[-1]
                    gb = _sparse.OuterProducts([(_view(a2, (rows, a2.shape[-1])), _view(g2, (rows, g2.shape[-1])))],
                                               b.shape)
                else:
                    gb = _view(unbroadcast(_mm(a2, g2, ta=True), b2.shape), b.shape)
            return ga, gb
        out_shape_full = (broadcast_shapes(a2.shape[:-2], b2.shape[:-2], "matmul") if a2.ndim > 2 or b2.ndim > 2 else ()) + (a2.shape[-2], b2.shape[-1])
        if b2.ndim == 2 and a2.ndim > 2:
            out_shape_full = a2.shape[:-1] + (b2.shape[-1],)
        record(out, (a, b), bw)
    return out


def matmul_bias(x, kernel, bias):
    """matmul(x, kernel) + bias in one kernel call (Dense): x (..., K) float32, kernel (K, N),
    bias (N,), all on one device; other operands go through matmul and add. The result and its
    gradients are those of the two ops (the bias is added to each row of the product)."""
    a, b, c = _as_tensor(x), _as_tensor(kernel), _as_tensor(bias)
    if not (a.ndim >= 2 and b.ndim == 2 and c.shape == (b.shape[1],) and a.shape[-1] == b.shape[0] and
            a.dtype == b.dtype == c.dtype and a.dtype in dtypes.FLOATS and a.device is b.device is c.device):
        return add(matmul(a, b), c)
    rows = 1
    for d in a.shape[:-1]:
        rows *= d
    a2 = _view(a, (rows, a.shape[-1]))
    shape = a.shape[:-1] + (b.shape[1],)
    out = empty(shape, a.dtype, a.device)
    a.device.kernels.matmul(a._buf, a2.shape, b._buf, b.shape, out._buf, (rows, b.shape[1]), False, False, False,
                            c._buf)
    if needs_grad(a, b, c):
        def bw(g, n):
            g2 = _view(g, (rows, b.shape[1]))
            ga = _view(_mm(g2, b, tb=True), a.shape) if n[0] else None
            gb = _sparse.OuterProducts([(a2, g2)], b.shape) if n[1] else None  # formed when read, as matmul's
            gc = unbroadcast(g, c.shape) if n[2] else None
            return ga, gb, gc
        record(out, (a, b, c), bw)
    return out


def dot(x1, x2):
    """numpy.dot for 1-D and 2-D operands (matmul semantics)."""
    return matmul(x1, x2)


Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)

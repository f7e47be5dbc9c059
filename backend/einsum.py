"""Einstein summation (numpy's `einsum`, as keras.ops.einsum), composed from existing ops: its
gradients are those ops'. (Scaled dot-product attention is in attention.py.)

einsum(subscripts, *operands):
1. The subscripts are parsed into one label per dimension: a letter, or for the dimensions an
   ellipsis stands for, their position counted from the right (numpy broadcasts them aligned
   right). Implicit mode ('ij,jk') outputs the ellipsis dimensions, then the letters used once,
   in alphabetical (ASCII) order.
2. Each operand on its own: a label repeated in it becomes one dimension (its diagonal, a
   strided view of the buffer: 'ii->i', traces 'ii->'); dimensions of size 1 are dropped (they
   broadcast, and summing over them is the identity); labels no other operand and not the output
   has are summed with `sum`.
3. Pairs of operands are contracted, the pair with the smallest result first (for two operands,
   the pair): both are permuted and reshaped to (batch, M, K) and (batch, K, N) and multiplied
   with `matmul` (one GEMM, batched when there are batch labels). A pair with no contracted
   label (an outer or elementwise product), or with only batch and contracted labels (a batch of
   dot products), is a broadcast `multiply` (then a `sum`) instead: the same value without a
   1 x 1 GEMM per element.
4. The result is transposed to the output's order and reshaped to put the size-1 dims back.
"""
import math as _pymath

from . import dtypes
from .linalg import matmul
from .manipulation import _gather_view, _strides, reshape, transpose
from .math import _as_tensor, check_same_device, multiply, sum

__all__ = ["einsum"]

_prod = _pymath.prod


# ---- parsing ------------------------------------------------------------------------------------

def _shapes(operands):
    return ", ".join(str(t.shape) for t in operands)


def _where(subscripts, operands):
    return f"subscripts {subscripts!r}, operand shapes {_shapes(operands)}"


def _term(term, subscripts, side):
    """The letters of one term, with None where its ellipsis is; ValueError for anything else."""
    if term.count("...") > 1:
        raise ValueError(f"einsum: the {side} {term!r} of subscripts {subscripts!r} has more than one ellipsis "
                         "'...'; use at most one per term")
    out = []
    for part_index, part in enumerate(term.split("...")):
        if part_index:
            out.append(None)
        for ch in part:
            if not ("a" <= ch <= "z" or "A" <= ch <= "Z"):
                what = "a stray '.' (an ellipsis is exactly '...')" if ch == "." else f"the character {ch!r}"
                raise ValueError(f"einsum: subscripts {subscripts!r} contain {what} in the {side} {term!r}; "
                                 "labels are the letters a-z and A-Z, terms are separated by ',' and the output "
                                 "follows '->'")
            out.append(ch)
    return out


def _parse(subscripts, operands):
    """(input label lists, output label list, {label: size}). Ellipsis dims are int labels."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a string such as 'ij,jk->ik', received "
                        f"{type(subscripts).__name__} {subscripts!r}")
    s = subscripts.replace(" ", "")
    if s.count("->") > 1:
        raise ValueError(f"einsum: subscripts {subscripts!r} must contain at most one '->' (between the input "
                         "terms and the output)")
    if s.replace("->", "").count("-") or s.replace("->", "").count(">"):
        raise ValueError(f"einsum: subscripts {subscripts!r} contain a stray '-' or '>'; the output follows '->', "
                         "as in 'ij,jk->ik'")
    lhs, rhs = s.split("->") if "->" in s else (s, None)
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: subscripts {subscripts!r} name {len(terms)} operand(s) but "
                         f"{len(operands)} were given (shapes {_shapes(operands)}); give one operand per "
                         "comma-separated term")
    parsed = [_term(t, subscripts, f"term {i}") for i, t in enumerate(terms)]
    n_ell = []
    for i, (p, t) in enumerate(zip(parsed, operands)):
        letters = len(p) - (None in p)
        if None in p and t.ndim < letters or None not in p and t.ndim != letters:
            raise ValueError(f"einsum: term {terms[i]!r} gives {letters} label(s) for operand {i}, which has "
                             f"{t.ndim} dimension(s) (shape {t.shape}); {_where(subscripts, operands)}")
        n_ell.append(t.ndim - letters if None in p else 0)
    E = max(n_ell, default=0)
    labels = []
    for p, e in zip(parsed, n_ell):
        row = []
        for c in p:
            row.extend(range(E - e, E) if c is None else [c])
        labels.append(row)

    sizes, owner = {}, {}
    for i, (row, t) in enumerate(zip(labels, operands)):
        seen = {}
        for lab, d in zip(row, t.shape):
            name = "the ellipsis" if isinstance(lab, int) else f"index {lab!r}"
            if lab in seen and seen[lab] != d:
                raise ValueError(f"einsum: {name} is repeated in operand {i} (a diagonal) with different sizes "
                                 f"{seen[lab]} and {d}; {_where(subscripts, operands)}")
            seen[lab] = d
            if d != 1:
                if sizes.get(lab, 1) != 1 and sizes[lab] != d:
                    raise ValueError(f"einsum: {name} has size {sizes[lab]} in operand {owner[lab]} and {d} in "
                                     f"operand {i}; sizes of one index must be equal (or 1, which broadcasts); "
                                     f"{_where(subscripts, operands)}")
                sizes[lab], owner[lab] = d, i
            else:
                sizes.setdefault(lab, 1)

    if rhs is None:
        counts = {}
        for row in parsed:
            for c in row:
                if c is not None:
                    counts[c] = counts.get(c, 0) + 1
        out = list(range(E)) + sorted(c for c, n in counts.items() if n == 1)
    else:
        p = _term(rhs, subscripts, "output")
        if None not in p and E:
            raise ValueError(f"einsum: the operands have {E} dimension(s) under '...' but the output {rhs!r} has no "
                             f"'...'; add '...' to the output (or sum them explicitly); {_where(subscripts, operands)}")
        out = []
        for c in p:
            if c is None:
                out.extend(range(E))
                continue
            if c in out:
                raise ValueError(f"einsum: output index {c!r} appears more than once in subscripts {subscripts!r}; "
                                 "each output index may appear once")
            if c not in sizes:
                raise ValueError(f"einsum: output index {c!r} does not appear in any input term of subscripts "
                                 f"{subscripts!r}; every output index must be an input index")
            out.append(c)
    return labels, out, sizes


# ---- one operand ----------------------------------------------------------------------------------

def _reduce(x, labels):
    """x with repeated labels reduced to their diagonal and size-1 dims dropped: (tensor, labels)."""
    if len(set(labels)) != len(labels):
        st = _strides(x.shape)
        uniq, ust, ushape = [], [], []
        for lab, d, s in zip(labels, x.shape, st):
            if lab in uniq:
                ust[uniq.index(lab)] += s
            else:
                uniq.append(lab)
                ust.append(s)
                ushape.append(d)
        x, labels = _gather_view(x, 0, tuple(ushape), ust), uniq
    if 1 in x.shape:
        labels = [lab for lab, d in zip(labels, x.shape) if d != 1]
        x = reshape(x, tuple(d for d in x.shape if d != 1))
    return x, labels


def _sum_unneeded(x, labels, needed):
    """x summed over its labels not in `needed`: (tensor, labels)."""
    drop = tuple(i for i, lab in enumerate(labels) if lab not in needed)
    if drop:
        x = sum(x, axis=drop)
        labels = [lab for i, lab in enumerate(labels) if i not in drop]
    return x, labels


def _permuted(x, labels, order):
    perm = [labels.index(lab) for lab in order]
    return x if perm == list(range(len(perm))) else transpose(x, perm)


# ---- a pair of operands ---------------------------------------------------------------------------

def _ordered(labs, order):
    return sorted(labs, key=order.index)


def _pair_plan(la, lb, keep, out):
    """(batch, m, k, n) label lists for contracting a (la) with b (lb); `out` is the output order
    when this is the last contraction, else None."""
    batch = [lab for lab in la if lab in lb and lab in keep]
    k = [lab for lab in la if lab in lb and lab not in keep]
    m = [lab for lab in la if lab not in lb]
    n = [lab for lab in lb if lab not in la]
    if out is not None:
        batch, m, n = _ordered(batch, out), _ordered(m, out), _ordered(n, out)
    return batch, m, k, n


def _contract(a, la, b, lb, keep, sizes, out):
    """The contraction of a pair: (tensor, labels). `out` as in _pair_plan."""
    if out is not None:
        # choose the operand order whose natural result (batch, m, n) is already the output order
        target = [lab for lab in out if lab in la or lab in lb]
        for x, lx, y, ly in ((a, la, b, lb), (b, lb, a, la)):
            batch, m, k, n = _pair_plan(lx, ly, keep, out)
            if batch + m + n == target:
                a, la, b, lb = x, lx, y, ly
                break
    batch, m, k, n = _pair_plan(la, lb, keep, out)
    size = lambda labs: _prod(sizes[lab] for lab in labs)  # noqa: E731
    B, M, K, N = size(batch), size(m), size(k), size(n)
    result_shape = tuple(sizes[lab] for lab in batch + m + n)
    if not k or not (m or n):
        # broadcast product: a as (batch, m, 1.., k), b as (batch, 1.., n, k), then sum over k
        xa = reshape(_permuted(a, la, batch + m + k), tuple(sizes[lab] for lab in batch + m) + (1,) * len(n) + (K,))
        xb = reshape(_permuted(b, lb, batch + n + k), tuple(sizes[lab] for lab in batch) + (1,) * len(m)
                     + tuple(sizes[lab] for lab in n) + (K,))
        r = multiply(xa, xb)
        return reshape(sum(r, axis=-1) if k else r, result_shape), batch + m + n
    xa = _permuted(a, la, batch + m + k)
    xb = _permuted(b, lb, batch + k + n)
    if batch:
        r = matmul(reshape(xa, (B, M, K)), reshape(xb, (B, K, N)))
    else:
        r = matmul(reshape(xa, (M, K)), reshape(xb, (K, N)))
    return reshape(r, result_shape), batch + m + n


def _result_size(la, lb, keep, sizes):
    return _prod(sizes[lab] for lab in set(la) | set(lb) if lab in keep)


# ---- einsum -------------------------------------------------------------------------------------

def einsum(subscripts, *operands):
    """Einstein summation with numpy's rules: `einsum('ij,jk->ik', a, b)` is a @ b.

    Explicit ('ij->ji') and implicit ('ij,jk') output, '...' for broadcast leading (or any) dims,
    repeated labels in one operand for diagonals and traces ('ii->i', 'ii->'), any number of
    operands. Operands are float32; a dimension of size 1 broadcasts against the other operands'
    size for that label. Differentiable in every operand."""
    if not operands:
        raise ValueError(f"einsum: no operands were given for subscripts {subscripts!r}; pass one tensor per "
                         "comma-separated term, e.g. einsum('ij,jk->ik', a, b)")
    ts = [_as_tensor(x, "einsum") for x in operands]
    labels, out, sizes = _parse(subscripts, ts)
    for i, t in enumerate(ts):
        if t.dtype not in dtypes.FLOATS:
            raise TypeError(f"einsum: operand {i} (shape {t.shape}) has dtype {t.dtype}; einsum computes in "
                            f"float32: cast it with ops.cast(x, 'float32'); subscripts {subscripts!r}")
    if len(ts) > 1:
        check_same_device("einsum", *ts)
        if len({t.dtype for t in ts}) > 1:  # bfloat16 with float32: float32, as Keras / JAX promote
            from .math import cast
            ts = [cast(t, dtypes.FLOAT32) for t in ts]

    ops_ = [_reduce(t, lab) for t, lab in zip(ts, labels)]
    for i in range(len(ops_)):
        needed = set(out).union(*(ops_[j][1] for j in range(len(ops_)) if j != i))
        ops_[i] = _sum_unneeded(*ops_[i], needed)

    while len(ops_) > 1:
        best = None
        for i in range(len(ops_)):
            for j in range(i + 1, len(ops_)):
                keep = set(out).union(*(ops_[q][1] for q in range(len(ops_)) if q not in (i, j)))
                cost = _result_size(ops_[i][1], ops_[j][1], keep, sizes)
                if best is None or cost < best[0]:
                    best = (cost, i, j, keep)
        _, i, j, keep = best
        final = len(ops_) == 2
        r = _contract(ops_[i][0], ops_[i][1], ops_[j][0], ops_[j][1], keep, sizes, out if final else None)
        ops_ = [o for q, o in enumerate(ops_) if q not in (i, j)] + [r]

    x, lab = ops_[0]
    present = [c for c in out if c in lab]
    x = _permuted(x, lab, present)
    return reshape(x, tuple(sizes[c] for c in out))

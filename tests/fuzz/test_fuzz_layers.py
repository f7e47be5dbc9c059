"""Fuzz suite for lamina.layers: every layer is built with generated arguments (valid ones and
mutants: a negative or fractional size, an unknown padding, an axis out of range...) and called
on generated inputs (shapes, an empty batch, size-1 and zero-size dimensions, NaN / Inf, the
wrong rank or channel count). A valid example must match a numpy reference computed from the
layer's own weights (or, where there is none, keep the shape compute_output_shape promises); an
invalid one must raise a clean exception naming the layer (its class or its name).

Usage, seeds and replay: as tests/fuzz/test_fuzz_ops.py (LAMINA_FUZZ_EXAMPLES, LAMINA_FUZZ_SEED,
LAMINA_FUZZ_EXAMPLE); the test ids are the layer class names, e.g. -k 'Conv2D'.
"""
import inspect

import numpy as np
import pytest

import lamina
from lamina import layers, ops

from fuzz.fuzzgen import Case, report, run_examples, run_isolated
from fuzz.references import f64 as _f64, np_conv, np_pool, np_rnn, sigmoid as _sigmoid

FILE = "test_fuzz_layers.py"
F32 = "float32"
SPECS = {}


def spec(cls):
    def deco(f):
        SPECS[cls.__name__] = (f, (cls.__name__,))
        return f
    return deco


class Run:
    """Builds the layer and calls it inside the example (so that a constructor's error is the
    example's outcome), keeps it for the reference, and checks compute_output_shape."""

    def __init__(self, make, x, **call_kw):
        self.make, self.x, self.call_kw, self.layer = make, x, call_kw, None

    def __call__(self):
        self.layer = self.make()
        return self.layer(self.x, **self.call_kw)

    def shape_check(self, out):
        """compute_output_shape (with the batch dimension unknown) agrees with the output."""
        xs = [np.shape(v) for v in self.x] if isinstance(self.x, list) else np.shape(self.x)
        if any(len(v) == 0 for v in (xs if isinstance(xs, list) else [xs])):
            return None   # no batch dimension
        unknown = [(None,) + tuple(s[1:]) for s in xs] if isinstance(xs, list) else (None,) + tuple(xs[1:])
        try:
            want = self.layer.compute_output_shape(unknown)
        except NotImplementedError:
            return None
        outs = out if isinstance(out, list) else [out]
        wants = want if isinstance(want, list) else [want]
        if len(outs) != len(wants):
            return f"compute_output_shape({unknown}) gives {want}, the layer returned {len(outs)} outputs"
        for o, w in zip(outs, wants):
            w = tuple(w)
            if len(w) != o.ndim or any(d is not None and d != od for d, od in zip(w[1:], o.shape[1:])):
                return f"compute_output_shape({unknown}) gives {w}, the output has shape {o.shape}"
        return None


def weights(run):
    return [_f64(w) for w in run.layer.get_weights()]


def layer_input(g, shape, special="nonfinite", dtypes=(F32,), scale=None):
    """The layer's input (a numpy array or a tensor). Data that cannot become a tensor at all is
    test_layers_name_themselves_when_inputs_cannot_be_converted's business, not each layer's."""
    return g.array("x", shape, dtypes, special=special, forms="no_list", mutable=False, scale=scale)


def rank_mutant(g, shape, min_rank, max_rank=None):
    """`shape`, or for a mutant one of a rank outside [min_rank, max_rank] (the layer refuses it)."""
    if g.mutant and g.mutated is None and g.coin(0.3):
        options = []
        if min_rank > 0:
            options.append(shape[:min_rank - 1])
        if max_rank is not None:
            options.append(shape + (2,) * (max_rank + 1 - len(shape)))
        bad = g.choice(options)
        g._note("input rank", f"{len(bad)} ({bad})", True)
        return bad
    return shape


def x_ref(g):
    return _f64(g.ref["x"])


def case(run, ref=None, atol=1e-4, rtol=1e-4, check=None):
    def full_check(out):
        return run.shape_check(out) or (check(out) if check else None)
    return Case(run, ref, atol=atol, rtol=rtol, check=full_check)


# ==== core ============================================================================================

ACTS = {"relu": lambda v: np.maximum(v, 0), "linear": lambda v: v, "tanh": np.tanh, "sigmoid": _sigmoid,
        None: lambda v: v, "softplus": lambda v: np.logaddexp(0, v)}


@spec(layers.Dense)
def _dense(g):
    units = g.int("units", 1, 5)
    act = g.pick("activation", list(ACTS))   # bad ones: test_core_layer_argument_errors_name_the_layer
    use_bias = g.flag("use_bias")
    s = rank_mutant(g, g.shape(None, min_rank=2, max_rank=4, zero=0.1), 2)
    x = layer_input(g, s)
    run = Run(lambda: layers.Dense(units, activation=act, use_bias=use_bias), x)

    def want():
        w = weights(run)
        y = x_ref(g) @ w[0] + (w[1] if use_bias else 0)
        return ACTS[act](y).astype(np.float32)
    return case(run, want)


@spec(layers.Activation)
def _activation(g):
    act = g.pick("activation", list(ACTS))
    x = layer_input(g, g.shape(None, min_rank=1, max_rank=4))
    return case(Run(lambda: layers.Activation(act), x), lambda: ACTS[act](x_ref(g)).astype(np.float32), atol=1e-6)


@spec(layers.ReLU)
def _relu(g):
    mv = g.pick("max_value", [None, 6.0, 1.0], bad=[-1.0])
    ns = g.pick("negative_slope", [0.0, 0.1], bad=[-0.5])
    th = g.pick("threshold", [0.0, 0.5])
    x = layer_input(g, g.shape(None, min_rank=1, max_rank=3))

    def want():
        v = x_ref(g)
        neg = np.where(v == -np.inf, -np.inf if ns > 0 else 0.0, ns * (v - th))   # 0 * -inf is 0 here, not NaN
        y = np.where(v >= th, v, neg)
        if mv is not None:
            y = np.minimum(y, mv)
        return y.astype(np.float32)

    return case(Run(lambda: layers.ReLU(max_value=mv, negative_slope=ns, threshold=th), x), want, atol=1e-6)


@spec(layers.LeakyReLU)
def _leaky(g):
    ns = g.pick("negative_slope", [0.3, 0.0, 1.5], bad=[-0.1])
    x = layer_input(g, g.shape(None, min_rank=1, max_rank=3))
    return case(Run(lambda: layers.LeakyReLU(negative_slope=ns), x),
                lambda: np.where(x_ref(g) > 0, x_ref(g), ns * x_ref(g)).astype(np.float32), atol=1e-6)


@spec(layers.Softmax)
def _softmax(g):
    s = g.shape(None, min_rank=1, max_rank=4)
    axis = g.axis("axis", len(s), none=False, mutable=False)
    x = layer_input(g, s, special="none")

    def want():
        v = x_ref(g)
        e = np.exp(v - v.max(axis=axis, keepdims=True)) if v.size else v
        return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32) if v.size else v.astype(np.float32)
    return case(Run(lambda: layers.Softmax(axis=axis), x), want, atol=1e-6)


@spec(layers.Dropout)
def _dropout(g):
    rate = g.pick("rate", [0.0, 0.5, 0.9], bad=[1.5, -0.2, "a", None])
    training = g.flag("training")
    x = layer_input(g, g.shape(None, min_rank=1, max_rank=3), special="none")

    def check(out):
        v = g.ref["x"]
        kept = out != 0
        if not training or rate == 0.0:
            return None if np.array_equal(out, v) else "Dropout changed its input outside training"
        if not np.allclose(out[kept], v[kept] / (1 - rate), rtol=1e-5, atol=1e-6):
            return "kept values are not x / (1 - rate)"
        return None
    return case(Run(lambda: layers.Dropout(rate, seed=1), x, training=training), check=check)


@spec(layers.ActivityRegularization)
def _activity_reg(g):
    l1 = g.pick("l1", [0.0, 0.01])
    x = layer_input(g, g.shape(None, min_rank=1, max_rank=3), special="none")
    return case(Run(lambda: layers.ActivityRegularization(l1=l1), x), lambda: g.ref["x"])


@spec(layers.Masking)
def _masking(g):
    mv = g.pick("mask_value", [0.0, 1.0])
    s = g.shape(None, min_rank=3, max_rank=3)
    x = layer_input(g, s, special="none")

    def want():
        v = x_ref(g)
        keep = np.any(v != mv, axis=-1, keepdims=True)
        return (v * keep).astype(np.float32)
    return case(Run(lambda: layers.Masking(mask_value=mv), x), want, atol=1e-6)


@spec(layers.Lambda)
def _lambda(g):
    fn = g.pick("function", [lambda t: ops.square(t), lambda t: t * 2.0], bad=[None, 3])
    x = layer_input(g, g.shape(None, min_rank=1, max_rank=3), special="none")
    return case(Run(lambda: layers.Lambda(fn), x), lambda: _f64(fn(lamina.convert_to_tensor(g.ref["x"])).numpy()))


@spec(layers.Rescaling)
def _rescaling(g):
    scale = g.pick("scale", [1 / 255, 2.0, -1.0], bad=["a", None])
    offset = g.pick("offset", [0.0, 0.5], bad=["b"])
    x = layer_input(g, g.shape(None, min_rank=1, max_rank=4), dtypes=(F32, "int32"))
    return case(Run(lambda: layers.Rescaling(scale, offset), x), lambda: (x_ref(g) * scale + offset).astype(np.float32),
                atol=1e-5)


@spec(layers.Embedding)
def _embedding(g):
    v, d = g.int("input_dim", 1, 6), g.int("output_dim", 1, 4)
    s = g.shape(None, min_rank=1, max_rank=3)
    n = v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 1
    ids = g.pick("ids", [g.rng.integers(0, n, s), g.rng.integers(0, n, s).astype(np.int32)],
                 bad=[np.full(tuple(max(k, 1) for k in s), n + 3), np.full((2,), -1)])
    run = Run(lambda: layers.Embedding(v, d), ids)
    return case(run, lambda: weights(run)[0][np.asarray(ids)].astype(np.float32))


# ==== convolution and pooling ===========================================================================

def _conv_common(g, rank, depthwise=False):
    k = g.pick("kernel_size", [int(g.rng.integers(1, 4)), tuple(int(v) for v in g.rng.integers(1, 4, rank))],
               bad=[0, -1, 1.5, (1,) * (rank + 1), "3"])
    st = g.pick("strides", [1, tuple(int(v) for v in g.rng.integers(1, 3, rank))], bad=[0, (1,) * (rank + 1)])
    pad = g.pick("padding", ["valid", "same", "SAME"] + (["causal"] if rank == 1 and not depthwise else []),
                 bad=["full", 3, None])
    dil = g.pick("dilation_rate", [1, 2], bad=[0, -2, 1.5])
    return k, st, pad, dil


def _spatial(g, rank, k, dil, pad):
    kk = (k,) * rank if isinstance(k, int) else tuple(k) if isinstance(k, tuple) and len(k) == rank else (1,) * rank
    d = dil if isinstance(dil, int) and dil > 0 else 1
    sp = tuple(int(v) for v in g.rng.integers(1, 7, rank))
    if str(pad).lower() == "valid":
        small = tuple(max(s, (a - 1) * d + 1) for s, a in zip(sp, kk)) != sp
        if small and g.mutant and g.mutated is None and g.coin(0.5):
            g._note("input", f"spatial {sp} smaller than the window {kk} (dilation {d})", True)
        else:
            sp = tuple(max(s, (a - 1) * d + 1) for s, a in zip(sp, kk))
    return sp, kk, d


def _tup(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _conv_spec(cls, rank):
    @spec(cls)
    def f(g):
        filters = g.int("filters", 1, 4)
        k, st, pad, dil = _conv_common(g, rank)
        sp, kk, d = _spatial(g, rank, k, dil, pad)
        if isinstance(st, tuple) and max(st) > 1 and d > 1:
            st = 1   # Keras refuses strides > 1 with dilation > 1 in some backends; keep it simple
        n, c = int(g.rng.integers(0, 3)), int(g.rng.integers(1, 4))
        s = rank_mutant(g, (n,) + sp + (c,), rank + 2, rank + 2)
        x = layer_input(g, s, special="none")
        run = Run(lambda: cls(filters, k, strides=st, padding=pad, dilation_rate=dil), x)

        def want():
            w, b = weights(run)
            v = x_ref(g)
            p = str(pad).lower()
            if p == "causal":
                v = np.pad(v, ((0, 0), ((kk[0] - 1) * d, 0), (0, 0)))
                p = "valid"
            return (np_conv(v, w, _tup(st, rank), p, (d,) * rank) + b).astype(np.float32)
        return case(run, want)


_conv_spec(layers.Conv1D, 1)
_conv_spec(layers.Conv2D, 2)


def _depthwise_spec(cls, rank, separable=False):
    @spec(cls)
    def f(g):
        filters = g.int("filters", 1, 4) if separable else None
        dm = g.int("depth_multiplier", 1, 3)
        k, st, pad, dil = _conv_common(g, rank, depthwise=True)
        sp, kk, d = _spatial(g, rank, k, dil, pad)
        if isinstance(st, tuple) and max(st) > 1:
            st = 1
        n, c = int(g.rng.integers(0, 3)), int(g.rng.integers(1, 4))
        s = rank_mutant(g, (n,) + sp + (c,), rank + 2, rank + 2)
        x = layer_input(g, s, special="none")
        kw = dict(strides=st, padding=pad, dilation_rate=dil, depth_multiplier=dm)
        run = Run((lambda: cls(filters, k, **kw)) if separable else (lambda: cls(k, **kw)), x)

        def want():
            w = weights(run)
            y = np_conv(x_ref(g), w[0], _tup(st, rank), str(pad).lower(), (d,) * rank, depthwise=True)
            if separable:
                y = y @ w[1].reshape(w[1].shape[-2], w[1].shape[-1])
            return (y + w[-1]).astype(np.float32)
        return case(run, want)


_depthwise_spec(layers.DepthwiseConv1D, 1)
_depthwise_spec(layers.DepthwiseConv2D, 2)
_depthwise_spec(layers.SeparableConv1D, 1, separable=True)
_depthwise_spec(layers.SeparableConv2D, 2, separable=True)


@spec(layers.ZeroPadding2D)
def _zeropad(g):
    p = g.pick("padding", [1, (1, 2), ((0, 1), (2, 0)), 0], bad=[-1, (1, 2, 3), "a", ((1,), (2,))])
    s = rank_mutant(g, (int(g.rng.integers(0, 3)),) + g.dims(2) + (int(g.rng.integers(0, 3)),), 4, 4)
    x = layer_input(g, s)

    def want():
        pp = ((p, p), (p, p)) if isinstance(p, int) else ((p[0], p[0]), (p[1], p[1])) if isinstance(p[0], int) else p
        return np.pad(g.ref["x"], ((0, 0),) + tuple(pp) + ((0, 0),))
    return case(Run(lambda: layers.ZeroPadding2D(p), x), want)


def _pool_spec(cls, rank, mode):
    @spec(cls)
    def f(g):
        ps = g.pick("pool_size", [int(g.rng.integers(1, 4)), tuple(int(v) for v in g.rng.integers(1, 4, rank))],
                    bad=[0, -1, 1.5, (2,) * (rank + 1)])
        st = g.pick("strides", [None, 1, 2], bad=[0, "1"])
        pad = g.pick("padding", ["valid", "same"], bad=["full", 2])
        sp, kk, _ = _spatial(g, rank, ps, 1, pad)
        s = rank_mutant(g, (int(g.rng.integers(0, 3)),) + sp + (int(g.rng.integers(1, 3)),), rank + 2, rank + 2)
        x = layer_input(g, s, special="inf")   # NaN: see test_fuzz_ops.test_max_pool_propagates_nan
        run = Run(lambda: cls(pool_size=ps, strides=st, padding=pad), x)
        return case(run, lambda: np_pool(x_ref(g), kk, _tup(st, rank) if st is not None else kk, pad,
                                         mode).astype(np.float32), atol=1e-5)


_pool_spec(layers.MaxPooling1D, 1, "max")
_pool_spec(layers.MaxPooling2D, 2, "max")
_pool_spec(layers.AveragePooling1D, 1, "avg")
_pool_spec(layers.AveragePooling2D, 2, "avg")


def _global_pool_spec(cls, rank, npf):
    @spec(cls)
    def f(g):
        kd = g.flag("keepdims")
        s = rank_mutant(g, (int(g.rng.integers(0, 3)),) + g.dims(rank) + (int(g.rng.integers(0, 3)),),
                        rank + 2, rank + 2)
        x = layer_input(g, s)
        axes = tuple(range(1, rank + 1))

        def want():
            try:
                return npf(x_ref(g), axis=axes, keepdims=kd).astype(np.float32)
            except ValueError:   # numpy's max of nothing; lamina: an empty result needs no identity
                out = np.sum(x_ref(g), axis=axes, keepdims=kd)
                if out.size:
                    raise
                return out.astype(np.float32)
        return case(Run(lambda: cls(keepdims=kd), x), want, atol=1e-5)


_global_pool_spec(layers.GlobalAveragePooling1D, 1, np.mean)
_global_pool_spec(layers.GlobalAveragePooling2D, 2, np.mean)
_global_pool_spec(layers.GlobalMaxPooling1D, 1, np.max)
_global_pool_spec(layers.GlobalMaxPooling2D, 2, np.max)


# ==== reshaping =========================================================================================

@spec(layers.Flatten)
def _flatten(g):
    s = g.shape(None, min_rank=1, max_rank=4)
    x = layer_input(g, s)
    return case(Run(lambda: layers.Flatten(), x), lambda: g.ref["x"].reshape(s[0], int(np.prod(s[1:]))))


@spec(layers.Reshape)
def _reshape(g):
    s = g.shape(None, min_rank=2, max_rank=4, zero=0.0)
    inner = list(g.rng.permutation(list(s[1:])))
    if inner and g.coin(0.4):
        inner[int(g.rng.integers(len(inner)))] = -1
    target = g.pick("target_shape", [tuple(int(v) for v in inner)],
                    bad=[(int(np.prod(s[1:])) + 1,), (-1, -1), "a", (1.5,)])
    x = layer_input(g, s)
    return case(Run(lambda: layers.Reshape(target), x), lambda: g.ref["x"].reshape((s[0],) + tuple(target)))


@spec(layers.Permute)
def _permute(g):
    s = g.shape(None, min_rank=2, max_rank=4)
    dims = tuple(int(v) + 1 for v in g.rng.permutation(len(s) - 1))
    dims = g.pick("dims", [dims], bad=[tuple(range(len(s))), (1,) * len(s), (0,) + dims[1:], "a"])
    x = layer_input(g, s)
    return case(Run(lambda: layers.Permute(dims), x), lambda: np.transpose(g.ref["x"], (0,) + tuple(dims)))


@spec(layers.RepeatVector)
def _repeat_vector(g):
    n = g.int("n", 1, 4)
    s = rank_mutant(g, g.shape(None, min_rank=2, max_rank=2), 2, 2)
    x = layer_input(g, s)
    return case(Run(lambda: layers.RepeatVector(n), x), lambda: np.repeat(g.ref["x"][:, None], n, axis=1))


# ==== merging ===========================================================================================

def _merge_inputs(g, k, same=True):
    s = g.shape(None, min_rank=1, max_rank=3, zero=0.1)
    xs = []
    for i in range(k):
        si = s if same or g.coin(0.5) else tuple(1 if g.coin(0.5) else d for d in s)
        big = [j for j, d in enumerate(s) if d > 1]
        if g.mutant and g.mutated is None and i == k - 1 and big and g.coin(0.4):
            j = g.choice(big)
            si = s[:j] + (s[j] + 1,) + s[j + 1:]   # neither equal nor 1: does not broadcast
            g._note("shapes", f"{s} and {si}", True)
        xs.append(g.array(f"x{i}", si, (F32,), special="nonfinite", forms="tensor", mutable=False))
    return xs


def _merge_spec(cls, npf, k_min=2):
    @spec(cls)
    def f(g):
        k = int(g.rng.integers(k_min, 4)) if cls is not layers.Subtract else 2
        if g.mutant and g.coin(0.2):
            k = 1
            g._note("inputs", "a list of 1", True)
        xs = _merge_inputs(g, k)
        return case(Run(lambda: cls(), xs), lambda: npf([_f64(g.ref[f"x{i}"]) for i in range(k)]).astype(np.float32),
                    atol=1e-5)


def _fold(f):
    def r(vs):
        out = vs[0]
        for v in vs[1:]:
            out = f(out, v)
        return out
    return r


_merge_spec(layers.Add, _fold(np.add))
_merge_spec(layers.Subtract, _fold(np.subtract))
_merge_spec(layers.Multiply, _fold(np.multiply))
_merge_spec(layers.Maximum, _fold(np.maximum))
_merge_spec(layers.Minimum, _fold(np.minimum))
_merge_spec(layers.Average, lambda vs: _fold(np.add)(vs) / len(vs))


@spec(layers.Concatenate)
def _concat(g):
    s = g.shape(None, min_rank=2, max_rank=4)
    axis = g.axis("axis", len(s), none=False, mutable=False)
    axis = g.pick("axis", [axis] if axis % len(s) else [-1], bad=[len(s) + 1, 1.5, "a"])
    a = axis % len(s) if isinstance(axis, int) and not isinstance(axis, bool) and -len(s) <= axis < len(s) else 1
    k = int(g.rng.integers(2, 4))
    xs = []
    for i in range(k):
        si = tuple(int(g.rng.integers(0, 4)) if j == a else d for j, d in enumerate(s))
        xs.append(g.array(f"x{i}", si, (F32,), forms="tensor", mutable=False))
    return case(Run(lambda: layers.Concatenate(axis=axis), xs),
                lambda: np.concatenate([g.ref[f"x{i}"] for i in range(k)], axis=a))


@spec(layers.Dot)
def _dot(g):
    b, d = int(g.rng.integers(0, 3)), int(g.rng.integers(0, 4))
    rank = int(g.rng.integers(2, 4))
    s1 = (b,) + g.dims(rank - 2, zero=0.0) + (d,)
    s2 = (b,) + g.dims(rank - 2, zero=0.0) + (d,)
    axes = g.pick("axes", [-1, (rank - 1, rank - 1)], bad=[rank, (0, 5), "a", 1.5])
    normalize = g.flag("normalize")
    x1 = g.array("x0", s1, (F32,), special="none", forms="tensor", mutable=False)
    x2 = g.array("x1", s2, (F32,), special="none", forms="tensor", mutable=False)

    def want():
        a, c = _f64(g.ref["x0"]), _f64(g.ref["x1"])
        if normalize:
            a = a / np.sqrt(np.maximum(np.sum(a * a, -1, keepdims=True), 1e-12))
            c = c / np.sqrt(np.maximum(np.sum(c * c, -1, keepdims=True), 1e-12))
        if rank == 2:
            return np.sum(a * c, -1, keepdims=True).astype(np.float32)
        out = np.zeros((b,) + s1[1:-1] + s2[1:-1])
        for i in range(b):
            out[i] = np.tensordot(a[i], c[i], axes=([-1], [-1]))
        return out.astype(np.float32)
    return case(Run(lambda: layers.Dot(axes=axes, normalize=normalize), [x1, x2]), want)


# ==== normalization =====================================================================================

@spec(layers.LayerNormalization)
def _layer_norm(g):
    s = g.shape(None, min_rank=2, max_rank=4, zero=0.0)
    axis = g.axis("axis", len(s), none=False, mutable=False)   # other axes: test_core_layer_argument_errors...
    eps = g.pick("epsilon", [1e-3, 1e-5])
    x = layer_input(g, s, special="none", scale=1.0)   # float32 statistics of large values: see the ops' spec
    run = Run(lambda: layers.LayerNormalization(axis=axis, epsilon=eps), x)

    def want():
        gamma, beta = weights(run)
        v = x_ref(g)
        a = axis % len(s)
        m, var = v.mean(axis=a, keepdims=True), v.var(axis=a, keepdims=True)
        shape = [1] * len(s)
        shape[a] = s[a]
        return ((v - m) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)).astype(np.float32)
    return case(run, want, atol=2e-4)


@spec(layers.BatchNormalization)
def _batch_norm(g):
    s = g.shape(None, min_rank=2, max_rank=4, zero=0.0)
    axis = g.axis("axis", len(s), none=False, mutable=False)
    mom = g.pick("momentum", [0.99, 0.5])
    training = g.flag("training")
    x = layer_input(g, s, special="none", scale=1.0)
    run = Run(lambda: layers.BatchNormalization(axis=axis, momentum=mom), x, training=training)

    def want():
        gamma, beta, mm, mv = weights(run)
        v = x_ref(g)
        a = axis % len(s)
        shape = [1] * len(s)
        shape[a] = s[a]
        if training:
            red = tuple(i for i in range(len(s)) if i != a)
            m, var = v.mean(axis=red, keepdims=True), v.var(axis=red, keepdims=True)
        else:
            m, var = mm.reshape(shape), mv.reshape(shape)
        return ((v - m) / np.sqrt(var + 1e-3) * gamma.reshape(shape) + beta.reshape(shape)).astype(np.float32)
    return case(run, want, atol=2e-3)


# ==== attention =========================================================================================

@spec(layers.Attention)
def _attention(g):
    b, tq, tv, d = (int(v) for v in g.rng.integers(0, 4, 4))
    use_scale = g.flag("use_scale")
    score_mode = g.pick("score_mode", ["dot", "concat"], bad=["add", 3])
    q = g.array("q", (b, tq, d), (F32,), special="none", forms="tensor", mutable=False)
    v = g.array("v", (b, tv, d) if not g.mutant or g.coin() else (b, tv, d + 1), (F32,), special="none",
                forms="tensor", mutable=False)
    if v.shape[-1] != d:
        g._note("value shape", repr(v.shape), True)
    run = Run(lambda: layers.Attention(use_scale=use_scale, score_mode=score_mode), [q, v])

    def want():
        qq, vv = _f64(g.ref["q"]), _f64(g.ref["v"])
        w = weights(run)
        scale = w[0] if use_scale else 1.0
        if score_mode == "dot":
            sc = np.einsum("bqd,bvd->bqv", qq, vv) * scale
        else:
            sc = w[-1] * np.sum(np.tanh((qq[:, :, None] + vv[:, None]) * scale), axis=-1)
        if tv == 0:
            return np.zeros((b, tq, d), np.float32)
        e = np.exp(sc - sc.max(-1, keepdims=True))
        return (np.einsum("bqv,bvd->bqd", e / e.sum(-1, keepdims=True), vv)).astype(np.float32)
    return case(run, want)


@spec(layers.AdditiveAttention)
def _additive_attention(g):
    b, tq, tv, d = (int(v) for v in g.rng.integers(0, 4, 4))
    q = g.array("q", (b, tq, d), (F32,), special="none", forms="tensor", mutable=False)
    v = g.array("v", (b, tv, d), (F32,), special="none", forms="tensor", mutable=False)
    inputs = [q, v] if not g.mutant or g.coin() else [q]
    if len(inputs) == 1:
        g._note("inputs", "[query] only", True)
    run = Run(lambda: layers.AdditiveAttention(), inputs)

    def want():
        qq, vv = _f64(g.ref["q"]), _f64(g.ref["v"])
        (scale,) = weights(run)
        sc = np.sum(scale * np.tanh(qq[:, :, None] + vv[:, None]), axis=-1)
        if tv == 0:
            return np.zeros((b, tq, d), np.float32)
        e = np.exp(sc - sc.max(-1, keepdims=True))
        return (np.einsum("bqv,bvd->bqd", e / e.sum(-1, keepdims=True), vv)).astype(np.float32)
    return case(run, want)


# ==== recurrent and wrappers ============================================================================

def _rnn_spec(cls, kind):
    @spec(cls)
    def f(g):
        units = g.int("units", 1, 4)
        rs = g.flag("return_sequences")
        gb = g.flag("go_backwards")
        b, t, feat = (int(v) for v in g.rng.integers(0, 4, 3))
        s = rank_mutant(g, (b, t, feat), 3, 3)
        x = layer_input(g, s, special="none")
        kw = {"reset_after": True} if cls is layers.GRU else {}
        run = Run(lambda: cls(units, return_sequences=rs, go_backwards=gb, **kw), x)

        def want():
            w = weights(run)
            K, R = w[0], w[1]
            bias = w[2] if len(w) > 2 else None
            out = np_rnn(kind, x_ref(g), None, None, K, R, bias, gb)
            return (out[0] if rs else out[1]).astype(np.float32)
        return case(run, want)


_rnn_spec(layers.SimpleRNN, "simple_rnn")
_rnn_spec(layers.LSTM, "lstm")
_rnn_spec(layers.GRU, "gru")


@spec(layers.TimeDistributed)
def _time_distributed(g):
    units = int(g.rng.integers(1, 4))
    inner = g.pick("layer", ["dense"], bad=[3, None, "dense"])
    s = rank_mutant(g, (int(g.rng.integers(0, 3)), int(g.rng.integers(0, 3)), int(g.rng.integers(1, 4))), 3)
    x = layer_input(g, s, special="none")
    valid = inner == "dense" and not g.mutated
    run = Run(lambda: layers.TimeDistributed(layers.Dense(units) if valid else inner), x)

    def want():
        k, b = weights(run)
        return (x_ref(g) @ k + b).astype(np.float32)
    return case(run, want)


@spec(layers.Bidirectional)
def _bidirectional(g):
    units = int(g.rng.integers(1, 4))
    mode = g.pick("merge_mode", ["concat", "sum", "mul", "ave"], bad=["max", 3])
    rs = g.flag("return_sequences")
    b, t, feat = (int(v) for v in g.rng.integers(0, 3, 3))
    x = layer_input(g, (b, t, feat), special="none")
    run = Run(lambda: layers.Bidirectional(layers.SimpleRNN(units, return_sequences=rs), merge_mode=mode), x)

    def want():
        w = weights(run)
        v = x_ref(g)
        fo = np_rnn("simple_rnn", v, None, None, *w[:3], False)
        bo = np_rnn("simple_rnn", v, None, None, *w[3:6], True)
        f_, b_ = (fo[0], bo[0][:, ::-1]) if rs else (fo[1], bo[1])
        merged = {"concat": lambda: np.concatenate([f_, b_], -1), "sum": lambda: f_ + b_, "mul": lambda: f_ * b_,
                  "ave": lambda: (f_ + b_) / 2}[mode]()
        return merged.astype(np.float32)
    return case(run, want)


# ==== layers without a dedicated spec (added by other changes): a smoke fuzz ============================

# constructor arguments for layers that need some (a smoke test: plausible values)
SMOKE_ARGS = {"MaxNumBoundingBoxes": (3,), "HashedCrossing": (4,), "ConvLSTM1D": (2, 2), "ConvLSTM2D": (2, 2),
              "ConvLSTM3D": (2, 2), "Conv3D": (2, 2), "Conv1DTranspose": (2, 2), "Conv2DTranspose": (2, 2), "EinsumDense": ("ab,bc->ac", 3),
              "MultiHeadAttention": (2, 2), "Cropping1D": (1,), "Cropping2D": (1,), "Cropping3D": (1,),
              "CenterCrop": (2, 2), "RandomCrop": (2, 2), "Resizing": (3, 3), "RandomRotation": (0.1,),
              "RandomTranslation": (0.1, 0.1), "RandomZoom": (0.1,), "RandomContrast": (0.1,),
              "CategoryEncoding": (4,), "Hashing": (4,), "AlphaDropout": (0.2,), "GaussianDropout": (0.2,),
              "GaussianNoise": (0.2,), "SpatialDropout1D": (0.2,), "SpatialDropout2D": (0.2,),
              "SpatialDropout3D": (0.2,), "GRUCell": (2,), "LSTMCell": (2,), "SimpleRNNCell": (2,),
              "UpSampling1D": (), "Discretization": (), "GroupNormalization": (),
              "AdaptiveAveragePooling1D": (2,), "AdaptiveAveragePooling2D": (2,), "AdaptiveAveragePooling3D": (2,),
              "AdaptiveMaxPooling1D": (2,), "AdaptiveMaxPooling2D": (2,), "AdaptiveMaxPooling3D": (2,),
              "RandomBrightness": (0.2,), "RandomSaturation": (0.5,), "RandomHue": (0.3,),
              "RandomColorDegeneration": (0.5,), "RandomPosterization": (4,), "RandomSharpness": (0.5,),
              "Conv3DTranspose": (2, 2), "ReversibleEmbedding": (4, 2), "GroupedQueryAttention": (2, 2, 1)}
NOT_SMOKED = {"Layer", "InputLayer", "RNN", "StackedRNNCells", "StringLookup", "TextVectorization", "IntegerLookup",
              "Lambda", "Bidirectional", "TimeDistributed", "Wrapper", "SpectralNormalization", "Pipeline",
              # (the above need layers, vocabularies or functions to make)
              "GRUCell", "LSTMCell", "SimpleRNNCell"}   # called with states


def _layer_classes():
    out = {}
    for n in dir(layers):
        c = getattr(layers, n)
        if inspect.isclass(c) and issubclass(c, layers.Layer) and c.__name__ == n:
            out[n] = c
    return out


def smoke_spec(cls):
    """Built from SMOKE_ARGS (or no arguments) and called on float32 data of rank 2 to 5: it must
    return tensors or raise a clean error naming the layer."""
    args = SMOKE_ARGS.get(cls.__name__, ())

    def f(g):
        s = g.shape(None, min_rank=2, max_rank=5, zero=0.05)
        x = layer_input(g, s)

        def call():
            layer = cls(*args)
            out = layer(x)
            for o in (out if isinstance(out, (list, tuple)) else [out]):
                if not isinstance(o, lamina.Tensor):
                    raise AssertionError(f"returned {type(o).__name__}")
            return out
        return Case(call, lenient=True)
    return f, (cls.__name__,)


# Problems the smoke fuzz finds in layers added (by other changes) after this suite was written,
# in files a change does not touch, {name: "file: the problem"}: visible here (as xfails) until
# they are fixed. None at present.
KNOWN_SMOKE = {}


def _smoked():
    return sorted(n for n in _layer_classes() if n not in SPECS and n not in NOT_SMOKED)


# ==== the tests =========================================================================================

@pytest.mark.parametrize("name", sorted(SPECS))
def test_layer_matches_numpy_or_raises_cleanly(name):
    f, names = SPECS[name]
    report(run_examples(FILE, name, names, f))


@pytest.mark.parametrize("name", _smoked())
def test_layer_without_a_spec_returns_tensors_or_raises_cleanly(name):
    if name in KNOWN_SMOKE:
        pytest.xfail(KNOWN_SMOKE[name])
    f, names = smoke_spec(_layer_classes()[name])
    report(run_examples(FILE, name, names, f))


HUGE_LAYERS = [   # (expression, the layer its MemoryError must name)
    ("layers.Dense(2**40)(np.ones((2, 3), np.float32))", "Dense"),
    ("layers.Dense(3)(ops.zeros((0, 2**40)))", "Dense"),
    ("layers.Embedding(2**40, 4)(np.array([1]))", "Embedding"),
    ("layers.Embedding(4, 2**40)(np.array([1]))", "Embedding"),
    ("layers.Conv2D(2**40, 1)(np.ones((1, 2, 2, 3), np.float32))", "Conv2D"),
    ("layers.Conv1D(2, 2**40)(np.ones((1, 3, 1), np.float32))", "Conv1D"),
    ("layers.DepthwiseConv2D(1, depth_multiplier=2**40)(np.ones((1, 2, 2, 3), np.float32))", "DepthwiseConv2D"),
    ("layers.SeparableConv1D(2**40, 1)(np.ones((1, 2, 3), np.float32))", "SeparableConv1D"),
    ("layers.RepeatVector(2**40)(np.ones((2, 3), np.float32))", "RepeatVector"),
    ("layers.ZeroPadding2D(2**20)(np.ones((1, 1, 1, 4), np.float32))", "ZeroPadding2D"),
    ("layers.MaxPooling2D(2)(ops.zeros((2**40, 2, 2, 0)))", None),
    ("layers.Flatten()(ops.zeros((2**40, 0, 3)))", None),
]


def test_huge_layers_raise_memory_error_naming_the_layer():
    """Huge weights or outputs: MemoryError naming the layer before anything is allocated; zero-size
    outputs with huge dimensions are fine (None: must not fail). In subprocesses (a crash fails the
    test, not pytest)."""
    results = run_isolated([src for src, _ in HUGE_LAYERS])
    bad = []
    for (src, name), r in zip(HUGE_LAYERS, results):
        if "crash" in r:
            bad.append(f"{src}: {r['crash']}")
        elif name is None:
            if not r.get("ok"):
                bad.append(f"{src}: raised {r['type']}: {r['msg'][:200]}")
        elif r.get("ok"):
            bad.append(f"{src}: returned {r['shape']} instead of raising MemoryError")
        elif r["type"] != "MemoryError" or name not in r["msg"]:
            bad.append(f"{src}: expected MemoryError naming {name}, received {r['type']}: {r['msg'][:300]}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("bad", [None, np.ones((2, 3), np.complex64), [[1.0, 2.0], [3.0]]],
                         ids=["None", "complex", "ragged"])
def test_layers_name_themselves_when_inputs_cannot_be_converted(bad):
    layer = layers.Dense(2, name="the_dense")
    with pytest.raises((TypeError, ValueError), match="the_dense|Dense"):
        layer(bad)


CORE_ARGUMENT_ERRORS = [   # layers/core.py, layers/normalization.py and activations.py
    ("Dense(2, activation='nope')", lambda: layers.Dense(2, activation="nope")),
    ("Dense(2, activation=3)", lambda: layers.Dense(2, activation=3)),
    ("Activation('nope')", lambda: layers.Activation("nope")),
    ("ReLU(max_value='a')", lambda: layers.ReLU(max_value="a")),
    ("ReLU(negative_slope='a')", lambda: layers.ReLU(negative_slope="a")),
    ("LeakyReLU(negative_slope='a')", lambda: layers.LeakyReLU(negative_slope="a")),
    ("ActivityRegularization(l1=-1.0)", lambda: layers.ActivityRegularization(l1=-1.0)),
    ("ActivityRegularization(l1='a')", lambda: layers.ActivityRegularization(l1="a")),
    ("BatchNormalization(momentum='a')", lambda: layers.BatchNormalization(momentum="a")(np.ones((2, 3), np.float32))),
    ("LayerNormalization(epsilon=None)", lambda: layers.LayerNormalization(epsilon=None)(np.ones((2, 3), np.float32))),
    ("LayerNormalization(axis=1.0)", lambda: layers.LayerNormalization(axis=1.0)(np.ones((2, 3), np.float32))),
    ("LayerNormalization(axis='0')", lambda: layers.LayerNormalization(axis="0")(np.ones((2, 3), np.float32))),
    ("BatchNormalization(axis=True)", lambda: layers.BatchNormalization(axis=True)(np.ones((2, 3), np.float32))),
    ("Softmax(axis=4)", lambda: layers.Softmax(axis=4)(np.ones((2, 3), np.float32))),
    ("Softmax(axis='0')", lambda: layers.Softmax(axis="0")(np.ones((2, 3), np.float32))),
]


@pytest.mark.parametrize("what,make", CORE_ARGUMENT_ERRORS, ids=[w for w, _ in CORE_ARGUMENT_ERRORS])
def test_core_layer_argument_errors_name_the_layer(what, make):
    name = what.split("(")[0]
    with pytest.raises((TypeError, ValueError)) as info:
        make()
    assert name in str(info.value), str(info.value)


def test_flatten_of_an_empty_batch():
    assert layers.Flatten()(np.zeros((0, 2, 3), np.float32)).shape == (0, 6)


def test_relu_with_a_threshold_at_minus_infinity():
    out = layers.ReLU(threshold=0.5)(np.array([-np.inf, 1.0], np.float32)).numpy()
    np.testing.assert_array_equal(out, [0.0, 1.0])


@pytest.mark.parametrize("cls,bits", [("SimpleRNN", 40), ("LSTM", 40), ("GRU", 40), ("SimpleRNN", 30)])
def test_huge_recurrent_layers_name_themselves(cls, bits):
    """Weight sizes are checked before any is allocated: 2**30 units (a 12 GiB kernel, a 4 EiB
    recurrent kernel) fail at once instead of allocating the kernel first."""
    (r,) = run_isolated([f"layers.{cls}(2**{bits})(np.ones((1, 2, 3), np.float32))"])
    assert r.get("type") == "MemoryError" and cls in r["msg"], r

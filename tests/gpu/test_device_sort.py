"""Sorting and the kernels built on a sort (csrc/cuda/sort.cu) on a device under test against
cpu:0, results equal bit for bit: sort / argsort / top-k (ties, NaN, infinities, signed zeros;
rows sorted in one block and rows longer than a block's tile, merged; float32, int32, int64,
bool), IndexedSlices deduplication (sparse_sort, sparse_segment_sum: unsorted and repeated ids,
empty slices, the errors of bad ids and of a bad permutation), categorical draws and shuffles."""
import math

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import dtypes
from lamina.backend.sparse import IndexedSlices, deduplicate
from lamina.backend.tensor import empty

R = np.random.default_rng(23)
TILE = 2048  # pairs sort.cu sorts in one block; longer rows are merged


def _special_floats(shape, lo=-3, hi=4):
    """Small integers as float32 (many ties) with NaN, +-inf and -0.0 sprinkled in."""
    x = R.integers(lo, hi, size=shape).astype(np.float32)
    flat, u = x.reshape(-1), R.random(int(np.prod(shape)))
    flat[u < 0.08] = np.nan
    flat[(u >= 0.08) & (u < 0.12)] = np.inf
    flat[(u >= 0.12) & (u < 0.16)] = -np.inf
    flat[(u >= 0.16) & (u < 0.24)] = -0.0
    return x


def _ints(shape, dtype, extremes):
    x = R.integers(-5, 6, size=shape).astype(dtype)
    flat = x.reshape(-1)
    flat[R.integers(0, flat.size, size=max(1, flat.size // 20))] = extremes[0]
    flat[R.integers(0, flat.size, size=max(1, flat.size // 20))] = extremes[1]
    return x


I32_EXT = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)
I64_EXT = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)

# name -> array; each is sorted along its last axis (rows of n; n <= TILE in one block)
ARRAYS = {
    "f32_short_rows": _special_floats((37, 13)),
    "f32_one_per_row": _special_floats((5, 1)),
    "f32_full_tile": _special_floats((3, TILE)),
    "f32_long_rows": _special_floats((2, 5000)),
    "f32_long_row_3_passes": _special_floats((1, 9001), lo=-1000, hi=1000),
    "f32_distinct": R.normal(size=(4, 3000)).astype(np.float32),
    "f32_all_nan": np.full((2, 7), np.nan, np.float32),
    "i32_short_rows": _ints((9, 300), np.int32, I32_EXT),
    "i32_long_row": _ints((1, 4500), np.int32, I32_EXT),
    "i64_rows": _ints((6, 70), np.int64, I64_EXT),
    "i64_long_rows": _ints((2, 4100), np.int64, I64_EXT),
    "bool_rows": R.random((5, 40)) < 0.5,
}


def _same(got, want, what=""):
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if want.dtype == np.float32:  # bit for bit: NaN payloads and signed zeros included
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def _sorts(x, device):
    n = x.shape[-1]
    out = {}
    with lamina.device(device):
        t = lamina.convert_to_tensor(x)
        out["sort"] = ops.sort(t)
        out["argsort"] = ops.argsort(t)
        out["sort_axis0"] = ops.sort(t, axis=0)
        out["argsort_none"] = ops.argsort(t, axis=None)
        for k in sorted({0, 1, min(5, n), n}):
            out[f"top_k{k}_values"], out[f"top_k{k}_indices"] = ops.top_k(t, k)
        return {key: v.numpy() for key, v in out.items()}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_sorts_match_cpu(name, dev):
    x = ARRAYS[name]
    want, got = _sorts(x, "cpu:0"), _sorts(x, dev)
    for key in want:
        _same(got[key], want[key], f"{name}: {key}")
    if x.dtype != np.bool_:  # the reference order: numpy's stable sort (NaN last, ties by position)
        np.testing.assert_array_equal(want["argsort"], np.argsort(x, axis=-1, kind="stable"))


def test_sort_kernel_edges_match_cpu(dev):
    """Empty rows, no rows, k = 0, and the kernel's own errors, raised the same on both devices."""
    def run(device, x, outer, n, k, descending, vals_dtype=None):
        with lamina.device(device):
            t = lamina.convert_to_tensor(x)
            vals = empty((outer, k), vals_dtype or t.dtype, t.device)
            idx = empty((outer, k), dtypes.INT64, t.device)
            try:
                t.device.kernels.sort_rows(t._buf, outer, n, k, descending, vals._buf, idx._buf)
                return vals.numpy(), idx.numpy()
            except (ValueError, TypeError) as e:
                return type(e).__name__ + ": " + str(e)

    x = _special_floats((4, 6))
    cases = [(x, 4, 6, 0, False), (x.reshape(-1)[:0], 0, 6, 3, True), (x.reshape(-1)[:0], 3, 0, 0, False),
             (x, 4, 6, 7, True), (x, 3, 6, 2, False), (R.random((2, 3)) < 0.5, 2, 3, 3, False)]
    for case in cases:
        want, got = run("cpu:0", *case), run(dev, *case)
        if isinstance(want, str):
            assert got == want
        else:
            for g, w in zip(got, want):
                _same(g, w)
    msg = run(dev, x, 4, 6, 6, False, vals_dtype=dtypes.INT32)
    assert msg == run("cpu:0", x, 4, 6, 6, False, vals_dtype=dtypes.INT32) and "values" in msg


# ---- IndexedSlices deduplication: sparse_sort, then sparse_segment_sum -------------------------------

def _dedup(device, ids, values, rows):
    with lamina.device(device):
        s = IndexedSlices(lamina.convert_to_tensor(values), lamina.convert_to_tensor(ids), (rows,) + values.shape[1:])
        d = deduplicate(s)
        return d.indices.numpy(), d.values.numpy()


DEDUP = {
    "unsorted_repeats_i32": (R.integers(0, 50, size=300).astype(np.int32), (300, 5), 60),
    "long_i64": (R.integers(0, 700, size=5000).astype(np.int64), (5000, 3), 700),
    "one_id_many_times": (np.full(2500, 7, np.int32), (2500, 2), 9),
    "distinct_descending": (np.arange(40, 0, -1).astype(np.int64), (40, 4), 41),
    "single": (np.array([3], np.int32), (1, 6), 4),
    "empty": (np.zeros(0, np.int64), (0, 3), 5),
    "no_columns": (np.array([2, 0, 2, 1], np.int32), (4, 0), 3),
    "row_shape_2d": (np.array([1, 4, 1, 1, 0], np.int64), (5, 2, 3), 5),
}


@pytest.mark.parametrize("name", sorted(DEDUP))
def test_deduplicate_matches_cpu(name, dev):
    ids, vshape, rows = DEDUP[name]
    # values whose sums depend on the order of addition: the device must add in position order
    values = (R.normal(size=vshape) * np.exp(R.normal(size=vshape) * 8)).astype(np.float32)
    wi, wv = _dedup("cpu:0", ids, values, rows)
    gi, gv = _dedup(dev, ids, values, rows)
    _same(gi, wi)
    _same(gv, wv)
    np.testing.assert_array_equal(wi, np.unique(ids))


def test_deduplicate_ids_out_of_range_raise_on_the_device(dev):
    for ids, match in ((np.array([0, 3, 9, 1], np.int32), "id 9 at flat index 2 is out of range for 9 rows"),
                       (np.array([2, -4], np.int64), r"id -4 at flat index 1 .*negative values are not allowed")):
        with pytest.raises(ValueError, match=match):
            _dedup(dev, ids, np.ones((len(ids), 2), np.float32), 9)
    # the device still works after the errors
    gi, gv = _dedup(dev, np.array([1, 1], np.int32), np.ones((2, 2), np.float32), 9)
    np.testing.assert_array_equal(gi, [1])
    np.testing.assert_array_equal(gv, [[2.0, 2.0]])


def _segment_sum(device, ids, perm, u, D=2):
    """sparse_segment_sum called directly (a caller's own permutation): the outputs, or the error."""
    with lamina.device(device):
        i = lamina.convert_to_tensor(ids)
        v = lamina.convert_to_tensor(np.arange(len(ids) * D, dtype=np.float32).reshape(len(ids), D))
        p = lamina.convert_to_tensor(np.asarray(perm, np.int64))
        oi, ov = empty((u,), dtypes.INT64, i.device), empty((u, D), dtypes.FLOAT32, i.device)
        try:
            i.device.kernels.sparse_segment_sum(i._buf, v._buf, D, p._buf, oi._buf, ov._buf)
            return oi.numpy(), ov.numpy()
        except ValueError as e:
            return str(e)


@pytest.mark.parametrize("ids,perm,u,message", [
    ([5, 1, 5, 3], [1, 3, 0, 2], 3, None),
    ([0, 1, 2], [0, 5, 1], 3, "perm[1] = 5 is not a position in [0, 3)"),
    ([0, 1, 2], [-1, 0, 1], 3, "perm[0] = -1 is not a position"),
    ([2, 1, 2], [0, 1, 2], 2, "perm is not sorted by (id, position) at 1"),
    ([4, 4, 4], [0, 2, 1], 1, "perm is not sorted by (id, position) at 2"),
    ([0, 1, 2], [0, 1, 2], 1, "more than 1 distinct ids"),
    ([0, 1, 2], [0, 1, 7], 1, "more than 1 distinct ids"),       # before the bad position at 2
    ([0, 1, 2], [0, 9, 1], 1, "perm[1] = 9 is not a position"),  # before a second id
    ([3], [0], 0, "more than 0 distinct ids"),
    ([0, 0, 1], [0, 1, 2], 3, "2 distinct ids, outputs sized for 3"),
    ([], [], 1, "0 distinct ids, outputs sized for 1"),
    ([], [], 0, None),
])
def test_segment_sum_checks_match_cpu(dev, ids, perm, u, message):
    for dt in (np.int32, np.int64):
        want = _segment_sum("cpu:0", np.asarray(ids, dt), perm, u)
        got = _segment_sum(dev, np.asarray(ids, dt), perm, u)
        if message is None:
            assert not isinstance(want, str), want
            _same(got[0], want[0])
            _same(got[1], want[1])
        else:
            assert isinstance(want, str) and message in want, want
            assert got == want


# ---- categorical draws and shuffles -----------------------------------------------------------------

def _categorical_logits():
    x = (R.normal(size=(9, 1000)) * 4).astype(np.float32)
    x[1, ::3] = -np.inf                    # classes that are never drawn
    x[2, :] = -np.inf                      # no class: 0
    x[3, 10:20] = np.nan                   # NaN weights are skipped
    x[4, 500] = np.inf                     # an infinite max: 0
    x[5, :] = -745.0                       # weights exp(x - max) that underflow (to subnormals, and to 0)
    x[5, 0], x[5, 1], x[5, 999] = 0.0, -708.5, -0.0
    x[6, :] = np.where(np.arange(1000) % 2 == 0, -0.0, 0.0)
    x[7, :] = 3.0                          # ties: uniform
    x[8, :] = np.linspace(-30, 30, 1000)   # one class dominates
    return x


LOGITS = _categorical_logits()
SHUFFLED = R.normal(size=(3, 2100, 2)).astype(np.float32)
BOOLS = R.random((7, 3)) < 0.5


def _random_draws(device):
    from lamina.backend.random import SeedGenerator
    out = {}
    with lamina.device(device):
        logits = lamina.convert_to_tensor(LOGITS)
        out["categorical"] = lamina.random.categorical(logits, 301, seed=31)
        gen = SeedGenerator(5)
        out["categorical_int64"] = lamina.random.categorical(logits[:, :7], 4, dtype="int64", seed=gen)
        out["categorical_one_class"] = lamina.random.categorical(logits[:3, :1], 6, seed=gen)
        out["categorical_no_samples"] = lamina.random.categorical(logits, 0, seed=gen)
        long = ops.arange(5000)
        out["shuffle_long"] = lamina.random.shuffle(long, seed=32)
        out["shuffle_long_gen"] = lamina.random.shuffle(ops.cast(long, "float32"), seed=gen)
        out["shuffle_middle_axis"] = lamina.random.shuffle(
            lamina.convert_to_tensor(SHUFFLED), axis=1, seed=33)
        out["shuffle_int64"] = lamina.random.shuffle(ops.cast(ops.reshape(ops.arange(60), (12, 5)), "int64"),
                                                     axis=1, seed=34)
        out["shuffle_bool"] = lamina.random.shuffle(lamina.convert_to_tensor(BOOLS), seed=35)
        out["shuffle_one"] = lamina.random.shuffle(lamina.convert_to_tensor(np.ones((1, 4), np.float32)), seed=36)
        out["shuffle_empty"] = lamina.random.shuffle(lamina.convert_to_tensor(np.ones((0, 4), np.float32)), seed=37)
        return {k: v.numpy() for k, v in out.items()}


def test_categorical_and_shuffle_match_cpu_bit_for_bit(dev):
    want, got = _random_draws("cpu:0"), _random_draws(dev)
    for k in want:
        _same(got[k], want[k], k)
    c = want["categorical"]
    assert (c[2] == 0).all() and (c[4] == 0).all() and (c[1] % 3 != 0).all()
    assert not np.isin(c[3], np.arange(10, 20)).any()
    assert set(np.unique(c[5])) <= {0, 1, 999} and (c[5] == 0).mean() > 0.2
    np.testing.assert_array_equal(np.sort(want["shuffle_long"]), np.arange(5000))
    assert not np.array_equal(want["shuffle_long"], np.arange(5000))
    assert (want["categorical_one_class"] == 0).all() and want["categorical_no_samples"].shape == (9, 0)


def test_device_exp_is_the_c_librarys():
    """random_categorical's weights use glibc's exp (csrc/cuda/exp_glibc.cuh) on the device: bit for
    bit the C library's (Python's math.exp) over the range the weights take (x <= 0, down to the
    subnormal results and the underflow to 0) and the special values."""
    gpus = lamina.list_devices("gpu")
    d = lamina.get_device(gpus[0]) if gpus else None
    if d is None or not hasattr(d.kernels.module, "_glibc_exp"):
        pytest.skip("no GPU module with _glibc_exp")
    rng = np.random.default_rng(3)
    x = np.concatenate([-rng.random(40000) * 40, -rng.random(20000) * 760, rng.random(10000) * 1400 - 700,
                        -rng.random(5000) * 1e-6,
                        np.array([0.0, -0.0, 1e-300, -1e-17, -np.inf, np.inf, np.nan, -745.1332191019412,
                                  -708.3964185322641, -1000.0, 709.78, -512.0, 512.0])])
    with lamina.device(d):
        t = lamina.convert_to_tensor(x.view(np.int64))
        out = empty(t.shape, dtypes.INT64, d)
        d.kernels.module._glibc_exp(t._buf, out._buf)
        got = out.numpy().view(np.float64)

    def libm_exp(v):
        try:
            return math.exp(v)
        except OverflowError:
            return math.inf

    want = np.array([libm_exp(v) for v in x])
    same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), (x[~same][:5], got[~same][:5], want[~same][:5])

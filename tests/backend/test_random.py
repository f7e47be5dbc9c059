"""backend/random.py: the Philox generator, seeding semantics, distributions and thread-count
independence."""
import math

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import random as lr

N = 100_000   # above the kernels' parallel grain, so 2 threads really split the work


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = lamina.backend.num_threads()
        lamina.backend.set_num_threads(self.n)

    def __exit__(self, *exc):
        lamina.backend.set_num_threads(self.old)


def test_philox_known_answers():
    # Random123's known-answer vectors for philox4x32_10
    k = lamina.get_device("cpu").kernels
    assert k.philox4x32(0, 0, 0, 0, 0, 0) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    m = 0xFFFFFFFF
    assert k.philox4x32(m, m, m, m, m, m) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert k.philox4x32(0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0) == (
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


DRAWS = {
    "uniform": lambda shape, seed: lr.uniform(shape, -2.0, 3.0, seed=seed),
    "normal": lambda shape, seed: lr.normal(shape, 1.0, 2.0, seed=seed),
    "truncated_normal": lambda shape, seed: lr.truncated_normal(shape, 0.0, 1.0, seed=seed),
    "randint": lambda shape, seed: lr.randint(shape, -5, 1000, seed=seed),
    "randint64": lambda shape, seed: lr.randint(shape, -(1 << 40), 1 << 40, dtype="int64", seed=seed),
    "dropout": lambda shape, seed: lr.dropout(ops.ones(shape), 0.4, seed=seed),
    "shuffle": lambda shape, seed: lr.shuffle(np.arange(math.prod(shape)).reshape(shape), seed=seed),
}


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_reproducible_for_a_seed_and_different_across_seeds(name):
    draw = DRAWS[name]
    a = draw((7, 301), 42).numpy()
    assert a.shape == (7, 301)
    np.testing.assert_array_equal(draw((7, 301), 42).numpy(), a)
    assert not np.array_equal(draw((7, 301), 43).numpy(), a)


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_same_values_with_one_and_two_threads(name):
    draw = DRAWS[name]
    with _threads(1):
        a = draw((N + 3,), 5).numpy()
    with _threads(2):
        b = draw((N + 3,), 5).numpy()
    np.testing.assert_array_equal(a, b)
    # a longer draw starts with the same values (elements depend only on their index)
    if name not in ("shuffle",):
        np.testing.assert_array_equal(draw((N + 40,), 5).numpy()[:N + 3], a)


def test_seed_generator_and_global_seed():
    gen = lr.SeedGenerator(11)
    a, b = lr.uniform((50,), seed=gen).numpy(), lr.uniform((50,), seed=gen).numpy()
    assert not np.array_equal(a, b)
    gen2 = lr.SeedGenerator(11)
    np.testing.assert_array_equal(lr.uniform((50,), seed=gen2).numpy(), a)
    np.testing.assert_array_equal(lr.uniform((50,), seed=gen2).numpy(), b)
    # an int seed is the first draw of SeedGenerator(seed)
    np.testing.assert_array_equal(lr.uniform((50,), seed=11).numpy(), a)
    assert gen.state == (11, 2) and lr.SeedGenerator.from_config(gen.get_config()).seed == 11
    lr.set_seed(123)
    c, d = lr.normal((20,)).numpy(), lr.normal((20,)).numpy()
    assert not np.array_equal(c, d)
    lr.set_seed(123)
    np.testing.assert_array_equal(lr.normal((20,)).numpy(), c)
    np.testing.assert_array_equal(lr.normal((20,)).numpy(), d)
    assert lr.SeedGenerator().seed != lr.SeedGenerator().seed


def _within(sample_stat, expected, se, k=5):
    assert abs(sample_stat - expected) < k * se, (sample_stat, expected, se)


def test_uniform_moments_and_bounds():
    lo, hi = -2.0, 3.0
    x = lr.uniform((N,), lo, hi, seed=1).numpy().astype(np.float64)
    assert x.dtype == np.float64 and x.min() >= lo and x.max() < hi
    sd = (hi - lo) / math.sqrt(12)
    _within(x.mean(), (lo + hi) / 2, sd / math.sqrt(N))
    _within(x.var(), sd ** 2, sd ** 2 * math.sqrt(0.8 / N))     # var of U's variance estimator: 4/5 sd^4 / N
    counts, _ = np.histogram(x, bins=10, range=(lo, hi))
    _within(counts.min(), N / 10, math.sqrt(N / 10 * 0.9), k=5)
    _within(counts.max(), N / 10, math.sqrt(N / 10 * 0.9), k=5)
    assert lr.uniform((3, 4)).dtype == "float32"


def test_normal_moments():
    m, s = 1.0, 2.0
    x = lr.normal((N,), m, s, seed=2).numpy().astype(np.float64)
    _within(x.mean(), m, s / math.sqrt(N))
    _within(x.std(), s, s / math.sqrt(2 * N))
    z = (x - m) / s
    _within((np.abs(z) < 1).mean(), 0.6826894921, math.sqrt(0.68 * 0.32 / N))
    _within(np.mean(z ** 3), 0.0, math.sqrt(15 / N))


def test_truncated_normal_bounds_and_moments():
    m, s = -1.0, 0.5
    x = lr.truncated_normal((N,), m, s, seed=3).numpy().astype(np.float64)
    assert np.abs(x - m).max() <= 2 * s + 1e-6
    # a standard normal truncated to [-2, 2] has std 0.8796257
    _within(x.mean(), m, 0.88 * s / math.sqrt(N))
    _within(x.std(), 0.8796257 * s, s / math.sqrt(N))
    assert np.abs(x - m).max() > 1.9 * s       # the tails up to the bound are reached


def test_randint_range_and_uniformity():
    x = lr.randint((N,), 3, 13, seed=4).numpy()
    assert x.dtype == np.int32 and x.min() == 3 and x.max() == 12
    counts = np.bincount(x - 3, minlength=10)
    _within(counts.min(), N / 10, math.sqrt(N / 10 * 0.9))
    _within(counts.max(), N / 10, math.sqrt(N / 10 * 0.9))
    y = lr.randint((1000,), -(1 << 40), 1 << 40, dtype="int64", seed=4).numpy()
    assert y.dtype == np.int64 and y.min() < -(1 << 38) and y.max() > (1 << 38)


def test_categorical_frequencies():
    logits = np.log(np.array([[0.1, 0.2, 0.7, 0.0], [0.25, 0.25, 0.25, 0.25]], np.float32) + 1e-30).astype(np.float32)
    logits[0, 3] = -np.inf
    s = lr.categorical(logits, 20000, seed=5).numpy()
    assert s.shape == (2, 20000) and s.dtype == np.int32
    f0 = np.bincount(s[0], minlength=4) / 20000
    assert f0[3] == 0
    for p, f in zip([0.1, 0.2, 0.7], f0):
        _within(f, p, math.sqrt(p * (1 - p) / 20000))
    f1 = np.bincount(s[1], minlength=4) / 20000
    np.testing.assert_allclose(f1, 0.25, atol=5 * math.sqrt(0.25 * 0.75 / 20000))
    np.testing.assert_array_equal(lr.categorical(logits, 20000, seed=5).numpy(), s)


def test_shuffle_is_a_permutation_along_axis():
    x = np.arange(60).reshape(5, 12)
    y = lr.shuffle(x, axis=1, seed=6).numpy()
    perm = y[0]
    assert sorted(perm.tolist()) == list(range(12)) and perm.tolist() != list(range(12))
    np.testing.assert_array_equal(y, x[:, perm])      # one permutation for every row
    z = lr.shuffle(x.astype(np.float32), seed=6).numpy()
    assert sorted(z[:, 0].tolist()) == [0, 12, 24, 36, 48]


def test_empty_shapes():
    assert lr.uniform((0, 3), seed=1).shape == (0, 3)
    assert lr.truncated_normal((2, 0)).shape == (2, 0)
    assert lr.randint((0,), 0, 5).shape == (0,)
    assert lr.normal(()).shape == ()


def test_errors():
    with pytest.raises(TypeError, match="uniform: expected a float dtype.*int32.*randint"):
        lr.uniform((2,), dtype="int32")
    with pytest.raises(TypeError, match="randint: expected an integer dtype.*float32"):
        lr.randint((2,), 0, 5, dtype="float32")
    with pytest.raises(ValueError, match="minval must be below maxval, received minval=3.0, maxval=1.0"):
        lr.uniform((2,), 3.0, 1.0)
    with pytest.raises(ValueError, match="randint: minval must be below maxval"):
        lr.randint((2,), 5, 5)
    with pytest.raises(ValueError, match=r"does not fit int32"):
        lr.randint((2,), 0, 1 << 40)
    with pytest.raises(ValueError, match=r"shape \(2, -1\) has a negative dimension"):
        lr.normal((2, -1))
    with pytest.raises(ValueError, match="stddev must be >= 0"):
        lr.normal((2,), stddev=-1.0)
    with pytest.raises(TypeError, match="seed must be an int, a SeedGenerator or None.*str"):
        lr.normal((2,), seed="7")
    with pytest.raises(TypeError, match="integer seed"):
        lr.set_seed(1.5)
    with pytest.raises(ValueError, match=r"\(batch, num_classes\).*\(4,\)"):
        lr.categorical(np.zeros(4, np.float32), 3)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        lr.shuffle(np.zeros((2, 2)), axis=2)


def test_public_names_exported():
    for name in lr.__all__:
        assert getattr(getattr(ops, name), "__wrapped__", getattr(ops, name)) is getattr(lr, name), name

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
    "gamma": lambda shape, seed: lr.gamma(shape, 0.7, seed=seed),
    "beta": lambda shape, seed: lr.beta(shape, 0.3, 2.0, seed=seed),
    "binomial": lambda shape, seed: lr.binomial(shape, 30, 0.45, seed=seed),
    "binomial_btrs": lambda shape, seed: lr.binomial(shape, 5000, 0.3, seed=seed),
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


# ---- gamma, beta, binomial: the distributions, checked against exact CDFs -------------------------

def _ks(sample, cdf):
    """Kolmogorov-Smirnov distance between a sample and a CDF (a function on numpy arrays)."""
    x = np.sort(sample.astype(np.float64))
    f = cdf(x)
    n = len(x)
    return max((np.arange(1, n + 1) / n - f).max(), (f - np.arange(n) / n).max())


def _gamma_cdf(alpha):
    erf = np.vectorize(math.erf)
    if alpha == 0.5:   # X = Z^2 / 2
        return lambda x: erf(np.sqrt(x))
    k = int(alpha)     # integer alpha: 1 - e^-x sum_{j<k} x^j / j!
    return lambda x: 1 - np.exp(-x) * sum(x ** j / math.factorial(j) for j in range(k))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0, 12.0])
def test_gamma_follows_its_cdf(alpha):
    x = lr.gamma((40_000,), alpha, seed=3).numpy()
    assert x.dtype == np.float32 and (x > 0).all()
    assert _ks(x, _gamma_cdf(alpha)) < 1.63 / math.sqrt(len(x))   # the KS test at 1%
    assert x.mean() == pytest.approx(alpha, rel=0.03)


@pytest.mark.parametrize("a,b,cdf", [
    (1.0, 1.0, lambda x: x),
    (0.5, 0.5, lambda x: 2 / np.pi * np.arcsin(np.sqrt(x))),
    (3.0, 1.0, lambda x: x ** 3),
    (0.05, 1.0, lambda x: x ** 0.05),   # mass piled at 0: X / (X + Y) would divide 0 by 0
])
def test_beta_follows_its_cdf(a, b, cdf):
    x = lr.beta((40_000,), a, b, seed=4).numpy()
    assert np.isfinite(x).all() and (x >= 0).all() and (x <= 1).all()
    assert _ks(x, cdf) < 1.63 / math.sqrt(len(x))


@pytest.mark.parametrize("n,p", [(7, 0.3), (40, 0.1), (60, 0.8), (1000, 0.5), (300, 0.93)])
def test_binomial_matches_the_exact_pmf(n, p):
    """Waiting times (n * min(p, 1 - p) < 10) and BTRS (above), both sides of p = 1/2."""
    x = lr.binomial((40_000,), n, p, seed=5).numpy()
    assert x.dtype == np.float32 and (x == np.round(x)).all() and x.min() >= 0 and x.max() <= n
    ks = np.arange(n + 1)
    pmf = np.array([math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in ks])
    ecdf = np.cumsum(np.bincount(x.astype(int), minlength=n + 1)) / len(x)
    assert np.abs(ecdf - np.cumsum(pmf)).max() < 1.63 / math.sqrt(len(x))   # KS at 1%, at the jumps
    assert x.mean() == pytest.approx(n * p, rel=0.02)
    assert x.var() == pytest.approx(n * p * (1 - p), rel=0.06)


def test_parameters_broadcast_and_edge_values():
    alpha = np.array([0.2, 1.0, 50.0], np.float32)
    x = lr.gamma((20_000, 3), alpha, seed=6).numpy()
    np.testing.assert_allclose(x.mean(axis=0), alpha, rtol=0.05)
    n = np.array([[0.0], [5.0], [9.0]], np.float32)
    p = np.array([0.0, 1.0, 0.5, 0.25], np.float32)
    y = lr.binomial((3, 4), n, p, seed=7).numpy()
    assert (y[0] == 0).all() and (y[:, 0] == 0).all() and (y[:, 1] == n[:, 0]).all()
    bt = lr.beta((2, 3), lamina.convert_to_tensor(np.ones(3, np.float32)), 2.0, seed=8)
    assert bt.shape == (2, 3)
    assert lr.gamma((3,), 2.0, dtype="bfloat16", seed=1).dtype == "bfloat16"
    assert lr.binomial((0, 2), 3, 0.5).shape == (0, 2)


def test_beta_streams_are_independent():
    """Beta's two gammas share the draw's counter but not their blocks: Beta(a, a) is symmetric
    about 1/2, which identical streams would make exactly 1/2."""
    x = lr.beta((10_000,), 2.0, 2.0, seed=9).numpy()
    assert np.abs(x - 0.5).max() > 0.3 and x.mean() == pytest.approx(0.5, abs=0.01)


def test_gamma_beta_binomial_errors():
    with pytest.raises(ValueError, match=r"gamma: every value of alpha must be a finite number above 0; "
                                         r"received alpha=-1.0"):
        lr.gamma((2,), -1.0)
    with pytest.raises(ValueError, match=r"alpha=0.0 \(in an array of shape \(2,\)\)"):
        lr.gamma((2,), [1.0, 0.0])
    with pytest.raises(ValueError, match=r"alpha of shape \(3,\) does not broadcast to the sample shape \(2,\)"):
        lr.gamma((2,), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="beta: every value of beta must be a finite number above 0"):
        lr.beta((2,), 1.0, float("nan"))
    with pytest.raises(ValueError, match="counts must be a whole number >= 0; received counts=2.5"):
        lr.binomial((2,), 2.5, 0.5)
    with pytest.raises(ValueError, match=r"probabilities must be a probability in \[0, 1\]; received "
                                         r"probabilities=1.5"):
        lr.binomial((2,), 3, 1.5)
    with pytest.raises(TypeError, match="binomial: expected a float dtype"):
        lr.binomial((2,), 3, 0.5, dtype="int32")


def test_seed_generators_without_a_seed_follow_set_random_seed():
    # Keras's make_default_seed: Python's random module, which set_random_seed seeds, so the
    # layers made with seed=None after it (augmentations, dropout) repeat their draws run to run
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)

    def run():
        lamina.utils.set_random_seed(7)
        g = lamina.random.SeedGenerator()
        layer = lamina.layers.RandomRotation(0.2)
        return g.seed, lamina.random.uniform((3,), seed=g).numpy(), layer(x, training=True).numpy()
    a, b = run(), run()
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert lamina.random.SeedGenerator().seed != lamina.random.SeedGenerator().seed   # still a stream

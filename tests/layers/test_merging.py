import numpy as np
import pytest

import lamina
from lamina import layers


def _xy(shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def test_elementwise_merges_eager_and_symbolic():
    x, y = _xy()
    for cls, ref in [(layers.Add, x + y), (layers.Subtract, x - y), (layers.Multiply, x * y),
                     (layers.Average, (x + y) / 2), (layers.Maximum, np.maximum(x, y)),
                     (layers.Minimum, np.minimum(x, y))]:
        np.testing.assert_allclose(cls()([x, y]).numpy(), ref, atol=1e-6)
        a, b = lamina.Input(shape=(4,)), lamina.Input(shape=(4,))
        assert cls()([a, b]).shape == (None, 4)
    a, b = lamina.Input(shape=(4,)), lamina.Input(shape=(4,))
    m = lamina.Model([a, b], layers.add([a, b]))
    np.testing.assert_allclose(m.predict([x, y], verbose=0), x + y, atol=1e-6)


def test_concatenate_and_errors():
    x, y = _xy((2, 3, 4))
    np.testing.assert_array_equal(layers.Concatenate(axis=1)([x, y]).numpy(), np.concatenate([x, y], 1))
    a, b = lamina.Input(shape=(3, 4)), lamina.Input(shape=(3, 5))
    assert layers.concatenate([a, b]).shape == (None, 3, 9)
    with pytest.raises(ValueError, match="matching shapes except"):
        layers.Concatenate(axis=1)([a, b])
    with pytest.raises(ValueError, match="list of inputs"):
        layers.Add()(x)


def test_dot():
    x, y = _xy((5, 4))
    np.testing.assert_allclose(layers.Dot(axes=1)([x, y]).numpy(), (x * y).sum(1, keepdims=True), atol=1e-5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(layers.Dot(axes=1, normalize=True)([x, y]).numpy(), (xn * yn).sum(1, keepdims=True),
                               atol=1e-5)
    a, b = _xy((2, 3, 4), 1)
    c = np.random.default_rng(2).standard_normal((2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(layers.Dot(axes=2)([a, c]).numpy(), np.einsum("bij,bkj->bik", a, c), atol=1e-5)
    assert layers.Dot(axes=2).compute_output_shape([(None, 3, 4), (None, 5, 4)]) == (None, 3, 5)


@pytest.mark.parametrize("axes", [5, -3, (1, 2), (2, 1)])
def test_dot_axes_out_of_range_raise_naming_the_layer(axes):
    """Issue 12: Dot(axes=5) on rank-2 inputs used axis 5 % 2 == 1 without a word."""
    x, y = _xy((3, 4))
    with pytest.raises(ValueError, match=r"Dot 'dot\w*': axes=.* is out of range for input [01] of shape \(3, 4\); "
                                         r"expected -2 <= axis <= 1"):
        layers.Dot(axes=axes)([x, y])
    a, b = lamina.Input(shape=(4,)), lamina.Input(shape=(4,))
    with pytest.raises(ValueError, match=r"out of range"):
        layers.Dot(axes=axes)([a, b])


@pytest.mark.parametrize("axes", [1.5, "1", True, (1, 1.0), (1,), None])
def test_dot_axes_must_be_integers(axes):
    with pytest.raises(ValueError, match=r"Dot: axes must be an int or a pair of ints"):
        layers.Dot(axes=axes)


@pytest.mark.parametrize("axis", [1.5, "1", True])
def test_concatenate_axis_must_be_an_integer(axis):
    with pytest.raises(ValueError, match=r"Concatenate: axis must be an integer"):
        layers.Concatenate(axis=axis)

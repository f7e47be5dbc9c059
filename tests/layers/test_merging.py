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


# ---- masks (Keras's base_merge / concatenate rules) ------------------------------------------------

def _masked_pair():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 4, 3)).astype(np.float32), rng.standard_normal((2, 4, 3)).astype(np.float32)
    mx = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool)
    my = np.array([[1, 0, 1, 0], [0, 0, 1, 1]], bool)
    xt, yt = lamina.ops.convert_to_tensor(x), lamina.ops.convert_to_tensor(y)
    xt._keras_mask, yt._keras_mask = lamina.ops.convert_to_tensor(mx), lamina.ops.convert_to_tensor(my)
    return x, y, mx, my, xt, yt


def test_merges_propagate_masks():
    x, y, mx, my, xt, yt = _masked_pair()
    for cls in (layers.Add, layers.Subtract, layers.Average, layers.Maximum, layers.Minimum, layers.Multiply):
        out = cls()([xt, yt])
        np.testing.assert_array_equal(out._keras_mask.numpy(), mx | my, err_msg=cls.__name__)
    # one unmasked input: no output mask
    assert layers.Add()([xt, lamina.ops.convert_to_tensor(y)])._keras_mask is None
    # values: Add / Subtract / Average as they are; Maximum / Minimum skip masked steps; Multiply counts them as 1
    np.testing.assert_allclose(layers.Add()([xt, yt]).numpy(), x + y, rtol=1e-6)
    mx3, my3 = mx[..., None], my[..., None]
    both = mx3 | my3
    only = np.where(mx3, x, np.where(my3, y, x))           # one kept input: its value (none kept: the first's)
    mxv = np.where(mx3 & my3, np.maximum(x, y), only)
    np.testing.assert_allclose(layers.Maximum()([xt, yt]).numpy(), mxv, rtol=1e-6)
    mnv = np.where(mx3 & my3, np.minimum(x, y), only)
    np.testing.assert_allclose(layers.Minimum()([xt, yt]).numpy(), mnv, rtol=1e-6)
    prod = np.where(both, np.where(mx3, x, 1) * np.where(my3, y, 1), 0)
    np.testing.assert_allclose(layers.Multiply()([xt, yt]).numpy(), prod, rtol=1e-6)
    # Concatenate: the masks broadcast to their inputs, concatenated, any over the last axis
    out = layers.Concatenate(axis=1)([xt, yt])
    np.testing.assert_array_equal(out._keras_mask.numpy(), np.concatenate([mx, my], axis=1))
    out = layers.Concatenate()([xt, lamina.ops.convert_to_tensor(y)])
    np.testing.assert_array_equal(out._keras_mask.numpy(), np.ones((2, 4), bool))
    assert layers.Dot(axes=-1)([xt, yt])._keras_mask is None
    with pytest.raises(ValueError, match=r"an input of shape \(2, 4, 3\) has a mask of shape \(2, 3\)"):
        layers.Maximum()([xt, yt], mask=[np.ones((2, 3), bool), None])


def test_masks_flow_through_merges_in_a_model():
    ids = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    inp = lamina.Input((4,), dtype="int32")
    a = layers.Embedding(5, 3, mask_zero=True)(inp)
    b = layers.Embedding(5, 3, mask_zero=True)(inp)
    merged = layers.Concatenate()([layers.Add()([a, b]), a])
    assert merged._keras_mask is not None and merged._keras_mask.shape == (None, 4)
    out = layers.GlobalAveragePooling1D()(merged)
    model = lamina.Model(inp, out)
    full = lamina.Model(inp, merged)(ids)
    np.testing.assert_array_equal(full._keras_mask.numpy(), ids != 0)
    f = full.numpy()
    np.testing.assert_allclose(model(ids).numpy(), np.stack([f[i][ids[i] != 0].mean(0) for i in range(2)]),
                               rtol=1e-5)


def test_merge_masks_keras_parity():
    from keras_ref import keras_or_none
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    x, y, mx, my, _, _ = _masked_pair()
    for name, kw in [("Add", {}), ("Maximum", {}), ("Minimum", {}), ("Multiply", {}), ("Average", {}),
                     ("Concatenate", {"axis": 1}), ("Concatenate", {})]:
        ours, theirs = getattr(layers, name)(**kw), getattr(keras.layers, name)(**kw)
        a = ours([x, y], mask=[mx, my])
        kx, ky = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
        kx._keras_mask, ky._keras_mask = keras.ops.convert_to_tensor(mx), keras.ops.convert_to_tensor(my)
        b = theirs([kx, ky])
        np.testing.assert_allclose(a.numpy(), np.asarray(b), rtol=1e-6, err_msg=name)
        np.testing.assert_array_equal(a._keras_mask.numpy(), np.asarray(b._keras_mask), err_msg=name)

import numpy as np
import pytest

import lamina
from lamina import layers
from layer_harness import run_layer_test


def _conv_ref(x, k, stride, padding):
    n, h, w, c = x.shape
    kh, kw, _, f = k.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-w // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
    return out


@pytest.mark.parametrize("padding,strides", [("valid", 1), ("same", 1), ("same", 2)])
def test_conv2d_harness_and_reference(padding, strides):
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 3)).astype(np.float32)
    layer, outs = run_layer_test(layers.Conv2D, {"filters": 4, "kernel_size": 3, "padding": padding,
                                                 "strides": strides}, (2, 7, 6, 3), input_data=x,
                                 expected_num_trainable_weights=2)
    k, b = layer.get_weights()
    assert k.shape == (3, 3, 3, 4)
    np.testing.assert_allclose(outs[0].numpy(), _conv_ref(x, k, strides, padding) + b, atol=1e-4)


def test_conv1d_and_causal():
    x = np.random.default_rng(1).standard_normal((2, 9, 3)).astype(np.float32)
    layer, outs = run_layer_test(layers.Conv1D, {"filters": 2, "kernel_size": 3, "padding": "causal"}, (2, 9, 3),
                                 input_data=x, expected_output_shape=(2, 9, 2))
    k, b = layer.get_weights()
    xp = np.pad(x, ((0, 0), (2, 0), (0, 0)))
    ref = _conv_ref(xp[:, :, None, :], k[:, None], 1, "valid")[:, :, 0, :] + b
    np.testing.assert_allclose(outs[0].numpy(), ref, atol=1e-4)


def test_conv_validation():
    with pytest.raises(ValueError, match="filters"):
        layers.Conv2D(0, 3)
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(2, 3, padding="full")
    c = layers.Conv2D(2, 3)
    with pytest.raises(ValueError, match=r"conv2d.*ndim=4.*\(2, 5, 5\)|expected min_ndim=4"):
        c(np.zeros((2, 5, 5), np.float32))


def test_zero_padding2d():
    x = np.ones((1, 2, 3, 1), np.float32)
    run_layer_test(layers.ZeroPadding2D, {"padding": ((1, 0), (2, 1))}, (1, 2, 3, 1), input_data=x,
                   expected_output=np.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0))))


def test_pooling_layers():
    x = np.random.default_rng(2).standard_normal((2, 4, 6, 3)).astype(np.float32)
    mx = x.reshape(2, 2, 2, 3, 2, 3).max(axis=(2, 4))
    av = x.reshape(2, 2, 2, 3, 2, 3).mean(axis=(2, 4))
    run_layer_test(layers.MaxPooling2D, {}, (2, 4, 6, 3), input_data=x, expected_output=mx)
    run_layer_test(layers.AveragePooling2D, {"pool_size": 2}, (2, 4, 6, 3), input_data=x, expected_output=av)
    run_layer_test(layers.GlobalAveragePooling2D, {}, (2, 4, 6, 3), input_data=x, expected_output=x.mean(axis=(1, 2)))
    run_layer_test(layers.GlobalMaxPooling2D, {"keepdims": True}, (2, 4, 6, 3), input_data=x,
                   expected_output=x.max(axis=(1, 2), keepdims=True))
    assert layers.MaxPooling2D(2, padding="same").compute_output_shape((None, 5, 5, 1)) == (None, 3, 3, 1)

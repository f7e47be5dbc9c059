"""Tests for backend/convolution_transpose.py: ops.conv_transpose (1-D and 2-D) forward and backward
against a scatter-loop numpy reference, finite differences and Keras (JAX backend)."""
import itertools

import numpy as np
import pytest

import lamina
from lamina import ops
from conv_refs import conv_transpose_grads_ref, conv_transpose_ref
from keras_ref import keras_or_none
from opcheck import check_forward, check_grad


@pytest.fixture(params=["split", "batch"])
def schedule(request):
    """Both ways conv.cpp spreads a convolution over threads (chunks, or whole images per thread):
    they zero the input gradient -- here the output -- in different places."""
    k = lamina.get_device("cpu").kernels
    threads = k.num_threads()
    if request.param == "batch" and threads < 2:
        k.set_num_threads(2)
    old = k.conv_schedule(1 if request.param == "split" else 2)
    yield request.param
    k.conv_schedule(old)
    k.set_num_threads(threads)


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---- forward ----------------------------------------------------------------------------------------

CASES_2D = [  # kernel (kh, kw), strides, padding, output_padding, dilation
    ((3, 3), 1, "valid", None, 1), ((3, 3), 2, "same", None, 1), ((2, 2), 2, "valid", None, 1),
    ((4, 3), (2, 3), "same", None, 1), ((3, 2), 3, "valid", (2, 1), 1), ((3, 3), 2, "same", 1, 1),
    ((2, 4), (3, 2), "same", (0, 1), 1), ((3, 2), 1, "same", None, 2), ((2, 3), 1, "valid", 0, (2, 3)),
    ((1, 1), 3, "valid", None, 1), ((1, 2), (2, 1), "same", (1, 0), 1), ((5, 4), 2, "valid", 1, 1),
    # strides and dilation together: the op allows them (as Keras's op does); the layers refuse them
    ((3, 2), 2, "same", 1, 2), ((2, 3), (3, 2), "valid", None, (2, 3)),
]


@pytest.mark.parametrize("kernel,strides,padding,output_padding,dilation", CASES_2D)
def test_conv_transpose_2d_matches_reference(rng, schedule, kernel, strides, padding, output_padding, dilation):
    x, w = f32(rng, 3, 4, 5, 3), f32(rng, *kernel, 2, 3)
    check_forward(ops.conv_transpose, conv_transpose_ref, [x, w], atol=1e-4, rtol=1e-4, strides=strides,
                  padding=padding, output_padding=output_padding, dilation_rate=dilation)


@pytest.mark.parametrize("k,strides,padding,output_padding,dilation", [
    (3, 1, "valid", None, 1), (4, 2, "same", None, 1), (3, 3, "valid", 2, 1), (2, 2, "same", 0, 1),
    (3, 1, "same", None, 3), (1, 2, "valid", 1, 1)])
def test_conv_transpose_1d_matches_reference(rng, k, strides, padding, output_padding, dilation):
    x, w = f32(rng, 2, 6, 3), f32(rng, k, 4, 3)
    y = check_forward(ops.conv_transpose, conv_transpose_ref, [x, w], atol=1e-4, rtol=1e-4, strides=strides,
                      padding=padding, output_padding=output_padding, dilation_rate=dilation)
    assert y.ndim == 3


def test_conv_transpose_output_shapes(rng):
    x = f32(rng, 1, 5, 7, 2)
    w = f32(rng, 3, 3, 4, 2)
    assert ops.conv_transpose(x, w, 2, "same").shape == (1, 10, 14, 4)                    # size * stride
    assert ops.conv_transpose(x, w, 2, "valid").shape == (1, 11, 15, 4)                   # (size-1)*s + k
    assert ops.conv_transpose(x, w, 2, "valid", output_padding=1).shape == (1, 12, 16, 4)
    assert ops.conv_transpose(x, w, 2, "same", output_padding=0).shape == (1, 9, 13, 4)   # (size-1)*s + k%2
    assert ops.conv_transpose(x, w, 3, "valid", dilation_rate=1).shape == (1, 15, 21, 4)  # max(k, s) = s
    # strides 1, "same": the input's size, and the transpose of a "same" conv2d's geometry
    assert ops.conv_transpose(x, w, 1, "same").shape == (1, 5, 7, 4)


def test_conv_transpose_channels_first_and_empty_batch(rng):
    x, w = f32(rng, 2, 3, 4, 5), f32(rng, 3, 2, 2, 3)  # (N, C, H, W)
    check_forward(ops.conv_transpose, conv_transpose_ref, [x, w], atol=1e-4, rtol=1e-4, strides=2,
                  padding="same", data_format="channels_first")
    y = ops.conv_transpose(np.zeros((0, 4, 5, 3), np.float32), w, strides=2)
    assert y.shape == (0, 9, 10, 2)  # (4 - 1) * 2 + 3, (5 - 1) * 2 + max(2, 2)


def test_conv_transpose_is_the_input_gradient_of_conv(rng):
    """<conv(y, w), x> == <y, conv_transpose(x, w)> for "same" convs whose output size divides evenly."""
    w = f32(rng, 3, 3, 2, 4)          # conv: 2 -> 4 channels; as a transposed kernel: 4 -> 2
    y = f32(rng, 2, 8, 6, 2)
    x = f32(rng, 2, 4, 3, 4)
    lhs = np.sum(ops.conv(y, w, 2, "same").numpy() * x)
    rhs = np.sum(y * ops.conv_transpose(x, w, 2, "same").numpy())
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4)


# ---- gradients --------------------------------------------------------------------------------------

@pytest.mark.parametrize("xshape,kshape,kw", [
    ((1, 3, 3, 2), (3, 3, 2, 2), dict(strides=2, padding="valid")),
    ((2, 2, 3, 2), (2, 3, 3, 2), dict(strides=2, padding="same")),
    ((1, 3, 2, 1), (3, 2, 2, 1), dict(strides=(3, 2), padding="valid", output_padding=(2, 1))),
    ((1, 3, 3, 2), (2, 2, 1, 2), dict(strides=1, padding="same", dilation_rate=2)),
    ((1, 2, 3, 2), (3, 3, 2, 2), dict(strides=2, padding="same", output_padding=1)),
    ((2, 4, 2), (3, 2, 2), dict(strides=2, padding="same")),                       # 1-D
    ((1, 3, 2), (2, 3, 2), dict(strides=3, padding="valid", output_padding=1)),    # 1-D
])
def test_conv_transpose_gradients(rng, schedule, xshape, kshape, kw):
    x, w = f32(rng, *xshape), f32(rng, *kshape)
    check_grad(lambda a, b: ops.conv_transpose(a, b, **kw), lambda a, b: conv_transpose_ref(a, b, **kw), [x, w],
               atol=2e-3, rtol=2e-3)


def test_conv_transpose_gradient_channels_first(rng):
    x, w = f32(rng, 1, 2, 3, 2), f32(rng, 2, 3, 3, 2)
    kw = dict(strides=2, padding="same", output_padding=1, data_format="channels_first")
    check_grad(lambda a, b: ops.conv_transpose(a, b, **kw), lambda a, b: conv_transpose_ref(a, b, **kw), [x, w],
               atol=2e-3, rtol=2e-3)


def test_conv_transpose_gradients_on_a_larger_problem_match_exact_formulas(rng, schedule):
    """Gradients of sum(y * g) against the scatter formulas, on shapes too large for finite
    differences (several chunks and images per thread)."""
    x, w = f32(rng, 5, 7, 6, 4), f32(rng, 3, 3, 5, 4)
    kw = dict(strides=2, padding="same", output_padding=1)
    xt, wt = lamina.convert_to_tensor(x), lamina.convert_to_tensor(w)
    g = f32(rng, *conv_transpose_ref(x, w, **kw).shape)
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        tape.watch(wt)
        loss = ops.sum(ops.conv_transpose(xt, wt, **kw) * g)
    gx, gw = tape.gradient(loss, [xt, wt])
    want_x, want_w = conv_transpose_grads_ref(x, w, g, **kw)
    np.testing.assert_allclose(gx.numpy(), want_x, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(gw.numpy(), want_w, atol=1e-3, rtol=1e-3)


# ---- Keras parity -----------------------------------------------------------------------------------

def _keras_cases():
    cases = []
    for nsp, k, s, d, padding, op in itertools.product((1, 2), (1, 2, 3, 4), (1, 2, 3), (1, 2), ("valid", "same"),
                                                       (None, 0, 1, 2)):
        if (op is not None and op >= s) or (s > 1 and d > 1):
            continue
        cases.append((nsp, k, s, d, padding, op))
    return cases


def test_conv_transpose_matches_keras_on_every_small_combination(rng):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    for nsp, k, s, d, padding, op in _keras_cases():
        x = f32(rng, 2, *(5, 4)[:nsp], 3)
        ks = (k,) if nsp == 1 else (k, max(k - 1, 1))
        w = f32(rng, *ks, 2, 3)
        want = np.asarray(keras.ops.conv_transpose(x, w, s, padding, op, None, d))
        got = ops.conv_transpose(x, w, s, padding, op, None, d).numpy()
        assert got.shape == want.shape, (nsp, k, s, d, padding, op)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=str((nsp, k, s, d, padding, op)))


def test_conv_transpose_matches_keras_channels_first_and_mixed_strides(rng):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x, w = f32(rng, 2, 3, 5, 4), f32(rng, 3, 4, 2, 3)
    for kw in (dict(strides=(2, 3), padding="same"), dict(strides=(3, 1), padding="valid", output_padding=(1, 0)),
               dict(strides=1, padding="same", dilation_rate=(2, 1))):
        want = np.asarray(keras.ops.conv_transpose(x, w, data_format="channels_first", **kw))
        np.testing.assert_allclose(ops.conv_transpose(x, w, data_format="channels_first", **kw).numpy(), want,
                                   atol=1e-4, rtol=1e-4, err_msg=str(kw))


# ---- errors -----------------------------------------------------------------------------------------

def test_conv_transpose_errors(rng):
    x, w = f32(rng, 2, 4, 4, 3), f32(rng, 3, 3, 2, 3)
    with pytest.raises(ValueError, match=r"output_padding.*strictly less than.*strides.*dimension 1.*2.*2"):
        ops.conv_transpose(x, w, strides=(3, 2), output_padding=(1, 2))
    with pytest.raises(ValueError, match=r"output_padding.*strictly less than.*strides"):
        ops.conv_transpose(x, w, strides=1, output_padding=1)
    with pytest.raises(ValueError, match=r"output_padding.*non-negative.*received -1"):
        ops.conv_transpose(x, w, strides=2, output_padding=-1)
    with pytest.raises(ValueError, match=r"output_padding.*tuple of 2.*\(1, 1, 1\)"):
        ops.conv_transpose(x, w, strides=2, output_padding=(1, 1, 1))
    with pytest.raises(ValueError, match=r"3 channels.*\(2, 4, 4, 3\).*expects 4 input channels.*\(3, 3, 3, 4\)"):
        ops.conv_transpose(x, f32(rng, 3, 3, 3, 4))
    with pytest.raises(ValueError, match=r"kernel of rank 4 \(kh, kw, out_channels, in_channels\).*\(3, 2, 3\)"):
        ops.conv_transpose(x, f32(rng, 3, 2, 3))
    with pytest.raises(ValueError, match=r"kernel of rank 3.*\(3, 3, 2, 3\)"):
        ops.conv_transpose(f32(rng, 2, 5, 3), w)
    with pytest.raises(ValueError, match=r"rank 3.*rank 4.*\(2, 2, 4, 4, 3\).*3-D \(rank 5\).*not supported"):
        ops.conv_transpose(f32(rng, 2, 2, 4, 4, 3), f32(rng, 3, 3, 3, 2, 3))
    with pytest.raises(ValueError, match=r"padding.*'valid' or 'same'.*'full'"):
        ops.conv_transpose(x, w, padding="full")
    with pytest.raises(ValueError, match=r"strides.*positive int.*0"):
        ops.conv_transpose(x, w, strides=0)
    with pytest.raises(ValueError, match=r"data_format.*'NHWC'"):
        ops.conv_transpose(x, w, data_format="NHWC")
    with pytest.raises(ValueError, match=r"spatial dimension.*at least 1.*\(2, 0, 4, 3\)"):
        ops.conv_transpose(np.zeros((2, 0, 4, 3), np.float32), w)
    with pytest.raises(ValueError, match=r"at least 1.*\(0, 3, 2, 3\)"):
        ops.conv_transpose(x, np.zeros((0, 3, 2, 3), np.float32))
    with pytest.raises(TypeError, match=r"float32 input.*int32"):
        ops.conv_transpose(np.zeros((2, 4, 4, 3), np.int32), w)

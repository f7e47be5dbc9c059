"""Tests for layers/pooling_adaptive.py (AdaptiveAveragePooling1D/2D/3D, AdaptiveMaxPooling1D/2D/3D)
and the ops they run, ops.adaptive_average_pool / ops.adaptive_max_pool (backend/adaptive_pooling.py):
numpy reference, gradients, harness, Keras parity, configs and errors."""
import itertools

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from keras_ref import keras_or_none
from layer_harness import run_layer_test
from opcheck import check_grad

RNG = np.random.default_rng(5)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def adaptive_ref(x, output_size, mode="avg", data_format="channels_last"):
    """PyTorch's windows [floor(i L / O), ceil((i + 1) L / O)) per spatial axis, by loops."""
    x = np.asarray(x, np.float64)
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    nsp = x.ndim - 2
    sizes = (output_size,) * nsp if isinstance(output_size, int) else tuple(output_size)
    out = np.zeros((x.shape[0],) + sizes + (x.shape[-1],))
    bounds = [[(i * L // o, -(-(i + 1) * L // o)) for i in range(o)] for L, o in zip(x.shape[1:-1], sizes)]
    for pos in itertools.product(*[range(o) for o in sizes]):
        sl = tuple(slice(*bounds[a][p]) for a, p in enumerate(pos))
        win = x[(slice(None),) + sl]
        red = tuple(range(1, nsp + 1))
        out[(slice(None),) + pos] = win.max(axis=red) if mode == "max" else win.mean(axis=red)
    if data_format == "channels_first":
        out = np.moveaxis(out, -1, 1)
    return out


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("shape,size,fmt", [
    ((2, 7, 3), 3, "channels_last"), ((2, 10, 1), (4,), "channels_last"), ((1, 3, 2), 5, "channels_last"),
    ((2, 7, 5, 3), (3, 2), "channels_last"), ((2, 3, 8, 6), (8, 4), "channels_first"), ((1, 6, 6, 2), 3, None),
    ((2, 5, 4, 6, 2), (2, 3, 4), "channels_last"), ((1, 2, 3, 5, 4), 2, "channels_first"),
])
def test_adaptive_pool_ops_match_the_window_reference(mode, shape, size, fmt):
    x = _x(*shape)
    op = ops.adaptive_average_pool if mode == "avg" else ops.adaptive_max_pool
    got = op(x, size, data_format=fmt).numpy()
    np.testing.assert_allclose(got, adaptive_ref(x, size, mode, fmt or "channels_last"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_adaptive_pool_gradients(mode):
    op = ops.adaptive_average_pool if mode == "avg" else ops.adaptive_max_pool
    x = _x(2, 7, 5, 2)
    check_grad(lambda t: op(t, (3, 4)), lambda a: adaptive_ref(a, (3, 4), mode), [x])
    check_grad(lambda t: op(t, 2, data_format="channels_first"),
               lambda a: adaptive_ref(a, 2, mode, "channels_first"), [_x(1, 2, 5, 3)])


def test_adaptive_pool_op_dtypes_and_errors():
    ints = RNG.integers(0, 9, (1, 5, 2)).astype(np.int32)
    avg = ops.adaptive_average_pool(ints, 2)
    assert avg.dtype == "float32"
    np.testing.assert_allclose(avg.numpy(), adaptive_ref(ints, 2), rtol=1e-6)
    mx = ops.adaptive_max_pool(ints, 2)
    assert mx.dtype == "int32"
    np.testing.assert_array_equal(mx.numpy(), adaptive_ref(ints, 2, "max"))
    assert ops.adaptive_max_pool(np.zeros((0, 4, 3), np.float32), 2).shape == (0, 2, 3)
    with pytest.raises(ValueError, match="adaptive_average_pool: expected inputs of rank 3, 4 or 5"):
        ops.adaptive_average_pool(np.zeros((2, 3), np.float32), 2)
    with pytest.raises(TypeError, match=r"adaptive_max_pool: `output_size` must be an integer or a tuple of 2"):
        ops.adaptive_max_pool(np.zeros((1, 4, 4, 1), np.float32), (2, 2, 2))
    with pytest.raises(ValueError, match="`output_size` must be positive"):
        ops.adaptive_max_pool(np.zeros((1, 4, 1), np.float32), 0)
    with pytest.raises(ValueError, match="cannot pool a spatial dimension of size 0"):
        ops.adaptive_average_pool(np.zeros((1, 0, 3), np.float32), 2)
    with pytest.raises(ValueError, match="`data_format` must be"):
        ops.adaptive_average_pool(np.zeros((1, 4, 3), np.float32), 2, data_format="NHWC")
    with pytest.raises(MemoryError, match="adaptive_max_pool"):
        ops.adaptive_max_pool(np.zeros((1, 4, 1), np.float32), 2 ** 50)


LAYERS = [(layers.AdaptiveAveragePooling1D, "avg", 1), (layers.AdaptiveAveragePooling2D, "avg", 2),
          (layers.AdaptiveAveragePooling3D, "avg", 3), (layers.AdaptiveMaxPooling1D, "max", 1),
          (layers.AdaptiveMaxPooling2D, "max", 2), (layers.AdaptiveMaxPooling3D, "max", 3)]


@pytest.mark.parametrize("cls,mode,rank", LAYERS)
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_adaptive_pooling_layers(cls, mode, rank, fmt):
    spatial = (7, 5, 4)[:rank]
    shape = (2,) + spatial + (3,) if fmt == "channels_last" else (2, 3) + spatial
    size = (3, 2, 5)[:rank]
    x = _x(*shape)
    want = adaptive_ref(x, size, mode, fmt)
    layer, _ = run_layer_test(cls, {"output_size": size, "data_format": fmt}, shape, input_data=x,
                              expected_output=want, expected_output_shape=want.shape)
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + want.shape[1:]
    assert layer.get_config()["output_size"] == size
    assert cls(4).output_size == (4,) * rank


@pytest.mark.parametrize("cls,mode,rank", LAYERS)
def test_adaptive_pooling_keras_parity(cls, mode, rank):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    for spatial, size, fmt in [((9, 7, 5), (4, 3, 2), "channels_last"), ((4, 6, 3), (6, 4, 3), "channels_first")]:
        shape = (2,) + spatial[:rank] + (3,) if fmt == "channels_last" else (2, 3) + spatial[:rank]
        x = _x(*shape)
        ours, theirs = cls(size[:rank], data_format=fmt), getattr(keras.layers, cls.__name__)(size[:rank],
                                                                                            data_format=fmt)
        np.testing.assert_allclose(ours(x).numpy(), np.asarray(theirs(x)), rtol=1e-5, atol=1e-6)
        a, b = ours.get_config(), theirs.get_config()
        a.pop("name"), b.pop("name")
        assert a == b
    fn = ops.adaptive_average_pool if mode == "avg" else ops.adaptive_max_pool
    kfn = keras.ops.adaptive_average_pool if mode == "avg" else keras.ops.adaptive_max_pool
    x = _x(*((1,) + (10, 7, 6)[:rank] + (2,)))
    np.testing.assert_allclose(fn(x, 3).numpy(), np.asarray(kfn(x, 3)), rtol=1e-5, atol=1e-6)


def test_adaptive_pooling_layer_errors_and_model():
    with pytest.raises(TypeError, match="AdaptiveAveragePooling2D: `output_size` must be an integer or a tuple of 2"):
        layers.AdaptiveAveragePooling2D((2, 2, 2))
    with pytest.raises(TypeError, match="AdaptiveMaxPooling1D: `output_size`"):
        layers.AdaptiveMaxPooling1D("3")
    with pytest.raises(ValueError, match="AdaptiveMaxPooling3D: `output_size` must be positive"):
        layers.AdaptiveMaxPooling3D((1, 0, 1))
    with pytest.raises(ValueError, match="AdaptiveAveragePooling1D: `data_format` must be"):
        layers.AdaptiveAveragePooling1D(2, data_format="NWC")
    with pytest.raises(ValueError, match="expected ndim=4"):
        layers.AdaptiveAveragePooling2D(2)(np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPooling1D '.*': adaptive_max_pool: cannot pool"):
        layers.AdaptiveMaxPooling1D(2)(np.zeros((1, 0, 3), np.float32))
    # any input size pools to the same shape: a model with an unknown spatial size
    model = lamina.Sequential([lamina.Input((None, None, 2)), layers.AdaptiveAveragePooling2D(2), layers.Flatten(),
                               layers.Dense(1)])
    assert model.output_shape == (None, 1)
    assert model(_x(3, 5, 9, 2)).shape == (3, 1) and model(_x(1, 2, 3, 2)).shape == (1, 1)

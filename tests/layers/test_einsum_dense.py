"""EinsumDense: Keras's kernel/bias shapes from the equation, numpy reference, harness, Keras
parity (weights, outputs, configs, files), LoRA and errors."""
import json
import os

import numpy as np
import pytest

import lamina
from lamina import layers
from layer_harness import run_layer_test

from keras_ref import keras_or_none

# (equation, output_shape, bias_axes, input shape, kernel shape, bias shape, output shape)
SHAPES = [
    ("ab,bc->ac", 5, "c", (3, 4), (4, 5), (5,), (3, 5)),
    ("abc,cd->abd", (None, 6), "d", (2, 3, 4), (4, 6), (6,), (2, 3, 6)),
    ("...b,bc->...c", 6, "c", (2, 3, 4), (4, 6), (6,), (2, 3, 6)),
    ("abc,cde->abde", (None, 2, 3), "de", (2, 5, 4), (4, 2, 3), (2, 3), (2, 5, 2, 3)),
    ("abde,deg->abg", (None, 7), "g", (2, 5, 2, 3), (2, 3, 7), (7,), (2, 5, 7)),
    ("ab...,bc->ac...", (6,), "c", (2, 3, 4, 5), (3, 6), (6, 1, 1), (2, 6, 4, 5)),
    ("abc,cd->abd", (4, 6), "bd", (2, 4, 3), (3, 6), (4, 6), (2, 4, 6)),
    ("...ab,bc->...ac", (5, 6), "c", (2, 3, 5, 4), (4, 6), (6,), (2, 3, 5, 6)),
    ("ab,bcd->acd", (3, 2), None, (2, 4), (4, 3, 2), None, (2, 3, 2)),
    # (Keras leaves the 'b' entry of this bias shape None, and fails to build; lamina takes it from the input)
    ("abc,cd->abd", (None, 6), "b", (2, 3, 4), (4, 6), (3, 1), (2, 3, 6)),
]


@pytest.mark.parametrize("eq,out,bias_axes,ishape,kshape,bshape,oshape", SHAPES, ids=[s[0] for s in SHAPES])
def test_weight_shapes_and_numpy_reference(eq, out, bias_axes, ishape, kshape, bshape, oshape):
    x = np.random.default_rng(0).standard_normal(ishape).astype(np.float32)
    layer = layers.EinsumDense(eq, out, bias_axes=bias_axes, activation="tanh", bias_initializer="random_normal")
    y = layer(x)
    assert [w.name for w in layer.weights] == ["kernel"] + (["bias"] if bshape else [])
    assert layer.get_weights()[0].shape == kshape
    if bshape:
        assert layer.bias.shape == bshape
    want = np.einsum(eq, x, layer.kernel.numpy()) + (layer.bias.numpy() if bshape else 0.0)
    assert y.shape == oshape
    np.testing.assert_allclose(y.numpy(), np.tanh(want), rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape((None,) + ishape[1:])[1:] == oshape[1:]


def test_harness_sequence_projection():
    run_layer_test(layers.EinsumDense, {"equation": "abc,cde->abde", "output_shape": (None, 2, 3), "bias_axes": "de"},
                   (2, 5, 4), expected_output_shape=(2, 5, 2, 3), expected_num_trainable_weights=2)


def test_harness_ellipsis_and_no_bias():
    run_layer_test(layers.EinsumDense, {"equation": "...b,bc->...c", "output_shape": 3, "activation": "relu"},
                   (2, 4, 5), expected_output_shape=(2, 4, 3), expected_num_trainable_weights=1)


def test_kernel_initializer_fans_count_the_equation_axes():
    """glorot_uniform over the kernel's input label (c) and output labels (d, e), as Keras: for a
    (64, 4, 8) kernel the limit is sqrt(6 / (64 + 32)) = 0.25, not the convolution rule's 0.088."""
    layer = layers.EinsumDense("abc,cde->abde", (None, 4, 8), kernel_initializer=lamina.initializers.GlorotUniform(1))
    layer.build((None, 3, 64))
    k = layer.kernel.numpy()
    assert 0.2 < np.abs(k).max() <= 0.25
    # the user's initializer object itself is left as given (its config is what get_config saves)
    assert layer.kernel_initializer.input_axes is None
    assert layer.get_config()["kernel_initializer"]["config"]["input_axes"] is None


def test_lora_trains_only_the_factors_and_saves_the_merged_kernel(tmp_path):
    x = np.random.default_rng(2).standard_normal((4, 3, 5)).astype(np.float32)
    layer = layers.EinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de", lora_rank=2, lora_alpha=4)
    y0 = layer(x).numpy()
    assert [w.name for w in layer.weights] == ["kernel", "bias", "lora_kernel_a", "lora_kernel_b"]
    assert [w.name for w in layer.trainable_weights] == ["bias", "lora_kernel_a", "lora_kernel_b"]
    assert layer.lora_kernel_a.shape == (5, 2, 2) and layer.lora_kernel_b.shape == (2, 3)
    k0 = layer._kernel.numpy().copy()
    np.testing.assert_allclose(y0, np.einsum("abc,cde->abde", x, k0) + layer.bias.numpy(), rtol=1e-5, atol=1e-5)
    model = lamina.Sequential([lamina.Input((3, 5)), layer])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.ones((4, 3, 2, 3), np.float32), epochs=2, verbose=0)
    np.testing.assert_array_equal(layer._kernel.numpy(), k0)
    merged = k0 + 2.0 * np.einsum("cdr,re->cde", layer.lora_kernel_a.numpy(), layer.lora_kernel_b.numpy())
    np.testing.assert_allclose(layer.kernel.numpy(), merged, rtol=1e-5, atol=1e-6)
    p = str(tmp_path / "lora.keras")
    model.save(p)
    loaded = lamina.models.load_model(p)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert loaded.layers[-1].get_config()["lora_rank"] == 2


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"invalid einsum equation 'ab,bc'.*\[X\],\[Y\]->\[Z\]"):
        layers.EinsumDense("ab,bc", 3)
    with pytest.raises(TypeError, match=r"`equation` must be a string"):
        layers.EinsumDense(None, 3)
    with pytest.raises(ValueError, match=r"bias dimension 'z' was requested, but is not part of the output spec 'ac'"):
        layers.EinsumDense("ab,bc->ac", 3, bias_axes="z")
    with pytest.raises(ValueError, match=r"`output_shape` entries must be non-negative integers or None"):
        layers.EinsumDense("ab,bc->ac", (-1,))
    with pytest.raises(ValueError, match=r"quantization .* is not supported by lamina"):
        layers.EinsumDense("ab,bc->ac", 3, quantization_config={"mode": "int8"})
    with pytest.raises(ValueError, match=r"lora_rank"):
        layers.EinsumDense("ab,bc->ac", 3, lora_rank=0)
    with pytest.raises(ValueError, match=r"LoRA is incompatible with kernel constraints"):
        layers.EinsumDense("ab,bc->ac", 3, kernel_constraint="non_neg", lora_rank=1)(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"cannot enable LoRA on a layer that isn't built"):
        layers.EinsumDense("ab,bc->ac", 3).enable_lora(2)
    layer = layers.EinsumDense("ab,bc->ac", 3, name="proj")
    with pytest.raises(ValueError, match=r"EinsumDense 'proj': equation 'ab,bc->ac' .* expects inputs of rank exactly "
                                         r"2; received an input of shape \(2, 3, 4\)"):
        layer(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"output_shape=\(3, 4\) has 2 entries; .* it needs 1"):
        layers.EinsumDense("ab,bc->ac", (3, 4))(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"shared dimension 'b' .* the input \(shape \(2, 3, 4\)\) has 3, output_shape "
                                         r"asks for 5"):
        layers.EinsumDense("abc,cd->abd", (5, 6))(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"weight dimension 'q' .* is in neither the input spec"):
        layers.EinsumDense("ab,bq->ab", 3)(np.ones((2, 3), np.float32))
    layer = layers.EinsumDense("ab,bc->ac", 3, name="built")
    layer(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"'built'.*expected ndim=2, found ndim=3"):
        layer(np.ones((2, 3, 4), np.float32))
    with pytest.raises(AttributeError, match=r"must be built before its `kernel` is read"):
        layers.EinsumDense("ab,bc->ac", 3).kernel


# ---- Keras ----------------------------------------------------------------------------------------

def _keras():
    keras = keras_or_none()
    if keras is None or os.environ.get("KERAS_BACKEND", "jax") != "jax":
        pytest.skip("Keras (jax backend) is not installed")
    return keras


def test_weights_outputs_and_configs_equal_keras():
    keras = _keras()
    rng = np.random.default_rng(3)
    for eq, out, bias_axes, ishape, _, _, _ in (SHAPES[2], SHAPES[3], SHAPES[5], SHAPES[6], SHAPES[8]):
        x = rng.standard_normal(ishape).astype(np.float32)
        k = keras.layers.EinsumDense(eq, out, bias_axes=bias_axes, activation="relu", kernel_regularizer="l2")
        want = np.asarray(k(x))
        ours = layers.EinsumDense(eq, out, bias_axes=bias_axes, activation="relu", kernel_regularizer="l2")
        ours(x)
        assert [w.path.split("/")[-1] for w in k.weights] == [w.name for w in ours.weights]
        ours.set_weights([np.asarray(w) for w in k.get_weights()])
        np.testing.assert_allclose(ours(x).numpy(), want, rtol=1e-5, atol=1e-5, err_msg=eq)
        kc, oc = k.get_config(), ours.get_config()
        kc.pop("name"), oc.pop("name")
        assert json.loads(json.dumps(oc)) == json.loads(json.dumps(kc)), eq
        back = layers.EinsumDense.from_config(json.loads(json.dumps(kc)))
        back(x)
        back.set_weights(ours.get_weights())
        np.testing.assert_allclose(back(x).numpy(), want, rtol=1e-5, atol=1e-5)


def test_lora_equals_keras():
    keras = _keras()
    x = np.random.default_rng(4).standard_normal((2, 3, 5)).astype(np.float32)
    k = keras.layers.EinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de", lora_rank=2, lora_alpha=3)
    k(x)
    k.lora_kernel_b.assign(np.random.default_rng(5).standard_normal((2, 3)).astype(np.float32))
    ours = layers.EinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de", lora_rank=2, lora_alpha=3)
    ours(x)
    assert [w.path.split("/")[-1] for w in k.weights] == [w.name for w in ours.weights]
    ours.set_weights([np.asarray(w) for w in k.get_weights()])
    np.testing.assert_allclose(ours(x).numpy(), np.asarray(k(x)), rtol=1e-5, atol=1e-5)


def test_model_files_move_both_ways(tmp_path):
    keras = _keras()
    x = np.random.default_rng(6).standard_normal((3, 4, 6)).astype(np.float32)

    def build(lib):
        inp = lib.Input((4, 6))
        h = lib.layers.EinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de", activation="tanh", name="split")(inp)
        return lib.Model(inp, lib.layers.EinsumDense("abde,deg->abg", (None, 5), bias_axes="g", name="merge")(h))
    m = build(lamina)
    m.save(str(tmp_path / "l.keras"))
    k = keras.models.load_model(str(tmp_path / "l.keras"))
    np.testing.assert_allclose(np.asarray(k.predict(x, verbose=0)), m.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    k = build(keras)
    k.save(str(tmp_path / "k.keras"))
    m = lamina.models.load_model(str(tmp_path / "k.keras"))
    np.testing.assert_allclose(m.predict(x, verbose=0), np.asarray(k.predict(x, verbose=0)), rtol=1e-5, atol=1e-5)

import numpy as np
import pytest

import lamina
from lamina import layers
from layer_harness import run_layer_test


def test_dense_harness_and_reference():
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    layer, _ = run_layer_test(layers.Dense, {"units": 5}, (4, 3), expected_output_shape=(4, 5),
                              expected_num_trainable_weights=2)
    k, b = layer.get_weights()
    assert k.shape == (3, 5) and b.shape == (5,)
    np.testing.assert_allclose(layer(x).numpy(), x @ k + b, atol=1e-5)


def test_dense_activation_no_bias_and_3d_input():
    layer, outs = run_layer_test(layers.Dense, {"units": 2, "activation": "tanh", "use_bias": False}, (2, 3, 4),
                                 expected_output_shape=(2, 3, 2), expected_num_trainable_weights=1)
    assert np.all(np.abs(outs[0].numpy()) <= 1.0)


def test_dense_validates_arguments_and_input():
    with pytest.raises(ValueError, match="units"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="activation"):
        layers.Dense(3, activation="nope")
    d = layers.Dense(3)
    d(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"dense.*axis -1.*4.*\(2, 5\)"):
        d(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="unrecognized keyword"):
        layers.Dense(3, unitz=4)


def test_unique_auto_names():
    a, b = layers.Dense(1), layers.Dense(1)
    assert a.name != b.name and b.name.startswith("dense")


def test_trainable_flag_takes_effect_at_once():
    d = layers.Dense(2)
    d(np.zeros((1, 3), np.float32))
    d.trainable = False
    assert d.trainable_weights == [] and len(d.non_trainable_weights) == 2
    d.trainable = True
    assert len(d.trainable_weights) == 2


def test_activation_and_activation_layers():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    run_layer_test(layers.Activation, {"activation": "relu"}, (3, 4), input_data=x, expected_output=np.maximum(x, 0))
    run_layer_test(layers.ReLU, {"max_value": 1.0}, (3, 4), input_data=x, expected_output=np.clip(x, 0, 1))
    run_layer_test(layers.LeakyReLU, {"negative_slope": 0.1}, (3, 4), input_data=x,
                   expected_output=np.where(x > 0, x, 0.1 * x))
    e = np.exp(x - x.max(-1, keepdims=True))
    run_layer_test(layers.Softmax, {}, (3, 4), input_data=x, expected_output=e / e.sum(-1, keepdims=True))


def test_dropout_training_vs_inference():
    x = np.ones((200, 50), np.float32)
    d = layers.Dropout(0.5, seed=3)
    np.testing.assert_array_equal(d(x).numpy(), x)
    y = d(x, training=True).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.4 < (y == 0).mean() < 0.6
    with pytest.raises(ValueError, match="rate"):
        layers.Dropout(1.5)


def test_lambda_layer():
    lam = layers.Lambda(lambda t: t * 2.0)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(lam(x).numpy(), 2 * x)
    inp = lamina.Input(shape=(3,))
    assert lam(inp).shape == (None, 3)
    config = lam.get_config()   # the lambda as its bytecode (tests/test_saving_lambda.py)
    assert config["function"]["class_name"] == "__lambda__"
    with pytest.raises(ValueError, match="safe_mode=False"):
        layers.Lambda.from_config(config)
    with lamina.saving.SafeModeScope(False):
        again = layers.Lambda.from_config(config)
    np.testing.assert_array_equal(again(x).numpy(), 2 * x)


# ---- LoRA ------------------------------------------------------------------------------------------

def test_dense_lora_trains_only_the_low_rank_factors():
    import lamina
    from lamina import layers
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.standard_normal((64, 3)).astype(np.float32)
    plain = layers.Dense(3)
    plain(x)
    lora = layers.Dense(3, lora_rank=2, lora_alpha=4)
    lora(x)
    lora.kernel.assign(plain.kernel.numpy())
    assert [w.name for w in lora.weights] == ["kernel", "bias", "lora_kernel_a", "lora_kernel_b"]
    assert [w.name for w in lora.trainable_weights] == ["bias", "lora_kernel_a", "lora_kernel_b"]
    np.testing.assert_allclose(lora(x).numpy(), plain(x).numpy(), atol=1e-6)   # b starts at zero
    k0 = lora.kernel.numpy().copy()
    model = lamina.Sequential([lamina.Input((6,)), lora])
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    np.testing.assert_array_equal(lora.kernel.numpy(), k0)
    assert np.abs(lora.lora_kernel_b.numpy()).max() > 0
    merged = k0 + 2.0 * lora.lora_kernel_a.numpy() @ lora.lora_kernel_b.numpy()
    np.testing.assert_allclose(lora.merged_kernel().numpy(), merged, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lora(x).numpy(), x @ merged + lora.bias.numpy(), rtol=1e-4, atol=1e-5)
    lora.trainable = True                                         # the kernel stays frozen under LoRA
    assert "kernel" not in [w.name for w in lora.trainable_weights]
    cfg = lora.get_config()
    assert cfg["lora_rank"] == 2 and cfg["lora_alpha"] == 4
    again = layers.Dense.from_config(cfg)
    again(x)
    assert again.lora_enabled and again.lora_alpha == 4


def test_dense_enable_lora_errors():
    from lamina import layers
    with pytest.raises(ValueError, match="isn't built yet"):
        layers.Dense(2).enable_lora(1)
    d = layers.Dense(2, kernel_constraint="non_neg")
    d(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="incompatible with kernel constraints"):
        d.enable_lora(1)
    with pytest.raises(ValueError, match="lora_rank"):
        layers.Dense(2, lora_rank=0)
    e = layers.Dense(2, lora_rank=1)
    e(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="already enabled"):
        e.enable_lora(1)


def test_dense_lora_equals_keras():
    import os
    import lamina  # noqa: F401
    from lamina import layers
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    # lora_alpha left at its default (= rank): Keras 3.15's build() calls enable_lora(rank) without
    # the constructor's lora_alpha, so Keras silently scales by 1 whatever lora_alpha says; lamina
    # applies the lora_alpha it is given (test_dense_lora_trains_only_the_low_rank_factors).
    k = keras.layers.Dense(3, lora_rank=2)
    k(x)
    vals = [rng.standard_normal(w.shape).astype(np.float32) for w in k.weights]
    k.set_weights(vals)
    ours = layers.Dense(3, lora_rank=2)
    ours(x)
    ours.set_weights(vals)
    assert [w.name for w in ours.weights] == [w.name for w in k.weights]
    np.testing.assert_allclose(ours(x).numpy(), np.asarray(k(x)), rtol=1e-5, atol=1e-5)


def test_layer_dtype_policies():
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}
    assert layers.Dense(2, dtype=policy).dtype == "float32"
    assert layers.Dense(2, dtype="float32").dtype == "float32"

    class Policy:
        name = "float32"
    assert layers.Dense(2, dtype=Policy()).dtype == "float32"
    for bad, match in (("mixed_float16", "use 'mixed_bfloat16'"), ("float16", "bfloat16"),
                       ("float64", "float32 only"),
                       ({"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}, "no float16")):
        with pytest.raises(ValueError, match=match):
            layers.Dense(2, dtype=bad)
    assert layers.Dense(2, dtype="mixed_bfloat16").compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match="unrecognized dtype 'bogus'"):
        layers.Dense(2, dtype="bogus")


@pytest.mark.parametrize("x", [np.float32(1), 1.0, np.array(2.0, np.float32)])
def test_dense_on_a_scalar_says_so(x):
    """Issue 12: Dense(3)(np.float32(1)) raised "tuple index out of range"."""
    with pytest.raises(ValueError, match=r"Dense 'dense\w*': expected an input with at least 1 dimension.*"
                                         r"received a scalar \(shape \(\)\)"):
        layers.Dense(3)(x)


@pytest.mark.parametrize("units", [1.5, "3", True, 0, -2, None])
def test_dense_units_must_be_a_positive_integer(units):
    with pytest.raises(ValueError, match=r"Dense: `units` must be a positive integer, received units="):
        layers.Dense(units)


def test_softmax_mask_and_axes():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    mask = rng.uniform(size=(2, 3, 4)) > 0.4
    mask[0, 1] = False                                      # a fully masked row: all zeros
    out = layers.Softmax()(x, mask=mask).numpy()
    e = np.where(mask, np.exp(x - np.where(mask, x, -np.inf).max(-1, keepdims=True)), 0)
    want = np.divide(e, e.sum(-1, keepdims=True), out=np.zeros_like(e), where=e.sum(-1, keepdims=True) > 0)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-7)
    assert np.all(out[0, 1] == 0)
    # a broadcasting mask (1, 4) and a float one (> 0.5 keeps)
    m = np.array([[1, 0, 1, 1]], bool)
    np.testing.assert_allclose(layers.Softmax()(x, mask=m.astype(np.float32)).numpy(),
                               layers.Softmax()(x, mask=np.broadcast_to(m, x.shape)).numpy(), rtol=1e-6)
    # the input's own mask (Embedding(mask_zero=True), Masking...) is used
    s = lamina.ops.convert_to_tensor(rng.standard_normal((2, 3)).astype(np.float32))
    s._keras_mask = lamina.ops.convert_to_tensor(np.array([[1, 1, 0], [1, 0, 0]], bool))
    np.testing.assert_allclose(layers.Softmax()(s).numpy(), layers.Softmax()(s.numpy(), mask=s._keras_mask).numpy())
    # several axes together
    both = layers.Softmax(axis=[1, 2])(x).numpy()
    np.testing.assert_allclose(both.sum(axis=(1, 2)), 1, rtol=1e-5)
    assert layers.Softmax(axis=[1, 2]).get_config()["axis"] == [1, 2]
    with pytest.raises(ValueError, match=r"Softmax '.*': the mask must broadcast to the inputs"):
        layers.Softmax()(x, mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="Softmax: `axis` must be an integer or a list of integers"):
        layers.Softmax(axis="0")
    with pytest.raises(ValueError, match=r"Softmax '.*': softmax: axis 4 is out of range"):
        layers.Softmax(axis=4)(x[0])


def test_softmax_mask_keras_parity():
    from keras_ref import keras_or_none
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    mask = rng.uniform(size=(2, 3, 4)) > 0.5
    mask[1, 2] = False
    for axis, m in [(-1, mask), (1, mask[:, :, :1].repeat(4, -1)), ([1, 2], mask)]:
        np.testing.assert_allclose(layers.Softmax(axis=axis)(x, mask=m).numpy(),
                                   np.asarray(keras.layers.Softmax(axis=axis)(x, mask=m)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda act: layers.Dense(6, activation=act),
    lambda act: layers.Conv2D(5, 3, padding="same", activation=act),
    lambda act: layers.Conv1D(4, 2, activation=act),
])
def test_relu_layers_run_bias_and_relu_fused_with_the_same_results(make):
    """Dense/Conv with activation='relu' run bias_relu (one pass); it must give what the linear
    layer followed by a ReLU gives, outputs and every gradient."""
    rng = np.random.default_rng(3)
    fused, plain = make("relu"), make("linear")
    shape = {6: (4, 7), 5: (2, 6, 6, 3), 4: (3, 8, 2)}[fused.units if hasattr(fused, "units") else fused.filters]
    x = rng.standard_normal(shape).astype(np.float32)
    fused.build(shape)
    plain.build(shape)
    plain.set_weights(fused.get_weights())
    outs = []
    for layer, after in ((fused, None), (plain, layers.ReLU())):
        xv = lamina.Variable(x)
        with lamina.GradientTape() as tape:
            y = layer(xv)
            y = after(y) if after is not None else y
            loss = lamina.ops.sum(lamina.ops.multiply(y, y))
        outs.append([y.numpy()] + [g.numpy() for g in tape.gradient(loss, [xv] + layer.trainable_weights)])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert all(np.any(o != 0) for o in outs[0])  # nothing trivially zero

"""Tests for layers/pipeline.py: Pipeline (layers applied in order as one layer; training flag,
masks, configs, errors, Keras parity)."""
import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(12)


def test_pipeline_applies_its_layers_in_order():
    x = RNG.uniform(0, 255, (4, 6, 6, 3)).astype(np.float32)
    pipe, outs = run_layer_test(layers.Pipeline, {"layers": [layers.Rescaling(1 / 255), layers.CenterCrop(4, 4)]},
                                x.shape, input_data=x, expected_output=x[:, 1:5, 1:5] / 255, atol=1e-6)
    assert [type(l).__name__ for l in pipe.layers] == ["Rescaling", "CenterCrop"]
    # training: True unless said (Keras's default), passed to the layers that take it
    flip = layers.Pipeline([layers.RandomFlip("horizontal", seed=1)])
    ys = np.stack([flip(x).numpy() for _ in range(8)])
    assert np.any(ys != x)
    np.testing.assert_array_equal(flip(x, training=False).numpy(), x)
    model = lamina.Sequential([lamina.Input((6, 6, 3)), flip])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    # weights of its layers are its weights, and train
    dense = layers.Pipeline([layers.Dense(3), layers.Dense(2)])
    run_layer_test(layers.Pipeline, {"layers": [layers.Dense(3), layers.Dense(2)]}, (5, 4),
                   expected_output_shape=(5, 2), expected_num_trainable_weights=4)
    assert dense(np.ones((2, 4), np.float32)).shape == (2, 2) and len(dense.weights) == 4


def test_pipeline_passes_masks_and_config():
    ids = np.array([[3, 1, 0], [2, 0, 0]])
    pipe = layers.Pipeline([layers.Embedding(5, 4, mask_zero=True), layers.GlobalAveragePooling1D()])
    out = pipe(ids)
    emb = pipe.layers[0](ids).numpy()
    want = np.stack([emb[0, :2].mean(0), emb[1, :1].mean(0)])    # masked steps left out of the mean
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5)
    config = pipe.get_config()
    assert set(config) == {"layers", "name"} and [c["class_name"] for c in config["layers"]] == \
        ["Embedding", "GlobalAveragePooling1D"]
    clone = layers.Pipeline.from_config(config)
    assert [type(l).__name__ for l in clone.layers] == ["Embedding", "GlobalAveragePooling1D"]
    clone = lamina.layers.deserialize(lamina.layers.serialize(pipe))
    assert isinstance(clone, layers.Pipeline)
    with pytest.raises(ValueError, match="Pipeline: `layers` must be a list of Layer instances"):
        layers.Pipeline([layers.Dense(2), "relu"])
    with pytest.raises(ValueError, match="must hold a `layers` key mapping to a list"):
        layers.Pipeline.from_config({"name": "p"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'trainable'"):
        layers.Pipeline([layers.Dense(2)], trainable=False)


def test_pipeline_keras_parity():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    x = RNG.uniform(0, 255, (2, 6, 6, 3)).astype(np.float32)
    ours = layers.Pipeline([layers.Rescaling(1 / 255), layers.RandomBrightness((0.1, 0.1), value_range=(0, 1))])
    theirs = keras.layers.Pipeline([keras.layers.Rescaling(1 / 255),
                                    keras.layers.RandomBrightness((0.1, 0.1), value_range=(0, 1))])
    np.testing.assert_allclose(ours(x).numpy(), np.asarray(theirs(x)), atol=1e-6)
    np.testing.assert_allclose(ours(x, training=False).numpy(), np.asarray(theirs(x, training=False)), atol=1e-6)
    a, b = ours.get_config(), theirs.get_config()
    a.pop("name"), b.pop("name")
    for c in a["layers"] + b["layers"]:
        c["config"].pop("name")
        c.pop("build_config", None)     # Keras records one for every layer, lamina for layers with a build()
    assert a == b, (a, b)
    loaded = lamina.layers.deserialize(keras.saving.serialize_keras_object(theirs))
    np.testing.assert_allclose(loaded(x).numpy(), ours(x).numpy(), atol=1e-6)


def test_keras_files_with_the_augmentation_layers_move_both_ways(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    img = RNG.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    theirs = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Pipeline([keras.layers.RandomSharpness(0.3),
                                                                              keras.layers.RandomGrayscale()]),
                               keras.layers.AutoContrast(), keras.layers.Flatten(), keras.layers.Dense(1)])
    path = str(tmp_path / "aug.keras")
    theirs.save(path)
    ours = lamina.models.load_model(path)
    want = theirs.predict(img, verbose=0)
    np.testing.assert_allclose(ours.predict(img, verbose=0), want, rtol=1e-5, atol=1e-4)
    back = str(tmp_path / "back.keras")
    ours.save(back)
    np.testing.assert_allclose(keras.models.load_model(back).predict(img, verbose=0), want, rtol=1e-5, atol=1e-4)

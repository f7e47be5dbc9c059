"""Tests for layers/preprocessing_mix.py: MixUp, CutMix, RandAugment, AugMix, and the Beta /
Dirichlet draws they use (statistics, mixing references recovered from one-hot labels, Keras
parity of the transforms given the same parameters, configs, seeds, errors)."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.backend.random import SeedGenerator
from lamina.layers.preprocessing_mix import beta, dirichlet
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(21)
IMAGES = RNG.uniform(0, 255, (6, 8, 7, 3)).astype(np.float32)


def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


def _t(a):
    return ops.convert_to_tensor(np.asarray(a))


def _config_parity(ours, theirs):
    a, b = ours.get_config(), theirs.get_config()
    a.pop("name"), b.pop("name")
    assert a == b, (a, b)


def test_beta_and_dirichlet_draws():
    gen = SeedGenerator(3)
    for a, b in [(0.2, 0.2), (1.0, 1.0), (2.0, 5.0)]:
        s = beta((20000,), a, b, gen).numpy()
        mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
        assert abs(s.mean() - mean) < 0.01 and abs(s.var() - var) < 0.1 * var, (a, b, s.mean(), s.var())
    tiny = beta((2000,), 1e-6, 1e-6, gen).numpy()              # CutMix's alpha near 0: weights 0 or 1, no NaN
    assert not np.isnan(tiny).any() and np.mean((tiny < 1e-3) | (tiny > 1 - 1e-3)) > 0.99
    w = np.stack([dirichlet(3, 1.0, gen).numpy() for _ in range(300)])
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-5)
    assert np.all(w >= 0) and np.all(np.abs(w.mean(axis=0) - 1 / 3) < 0.05)


def _mix_from_labels(labels):
    """(weight, partner) per image from mixed one-hot labels w e_i + (1 - w) e_j."""
    n = len(labels)
    w = labels[np.arange(n), np.arange(n)].copy()
    rest = labels.copy()
    rest[np.arange(n), np.arange(n)] = 0
    partner = np.where(rest.max(axis=1) > 0, rest.argmax(axis=1), np.arange(n))
    w = np.where(partner == np.arange(n), 1.0, w)
    return w, partner


def test_mixup_mixes_images_and_labels():
    x = RNG.uniform(0, 1, (64, 3, 3, 2)).astype(np.float32)
    out = layers.MixUp(alpha=0.4, seed=1)({"images": x, "labels": np.eye(64, dtype=np.float32)})
    w, partner = _mix_from_labels(out["labels"].numpy())
    want = w[:, None, None, None] * x + (1 - w[:, None, None, None]) * x[partner]
    np.testing.assert_allclose(out["images"].numpy(), want, atol=1e-5)
    assert sorted(partner.tolist()) == list(range(64))                 # a permutation
    ws = layers.MixUp(alpha=0.4, seed=2)._draw(_t(np.zeros((4000, 1, 1, 1))), SeedGenerator(2))[0].numpy()
    assert abs(ws.mean() - 0.5) < 0.02 and abs(ws.var() - 1 / (4 * 1.8)) < 0.02    # Beta(0.4, 0.4)
    # one image mixes with itself; inference returns the input itself
    run_layer_test(layers.MixUp, {"alpha": 0.3, "seed": 1}, (1, 4, 4, 3), input_data=IMAGES[:1, :4, :4],
                   expected_output=IMAGES[:1, :4, :4])
    ints = IMAGES.astype(np.int32)
    same = layers.MixUp()(ints, training=False)
    assert same.dtype == "int32" and np.array_equal(same.numpy(), ints)
    d = layers.MixUp()({"images": ints, "labels": np.eye(6)}, training=False)
    assert d["images"] is not None and np.array_equal(d["images"].numpy(), ints)
    with pytest.raises(ValueError, match="`alpha` must be a positive number"):
        layers.MixUp(alpha=0)
    boxes = {"boxes": np.zeros((6, 1, 4), np.float32), "labels": np.zeros((6, 1), np.int32)}
    with pytest.raises(ValueError, match="didn't specify a bounding box format"):
        layers.MixUp()({"images": IMAGES, "bounding_boxes": boxes})
    mixed = layers.MixUp(bounding_box_format="xyxy", seed=3)({"images": IMAGES, "bounding_boxes": boxes})
    assert tuple(mixed["bounding_boxes"]["boxes"].shape) == (6, 2, 4)   # each image's and its partner's
    with pytest.raises(ValueError, match="labels must have the batch size 6"):
        layers.MixUp()({"images": IMAGES, "labels": np.eye(5, dtype=np.float32)})


def test_cutmix_pastes_boxes_and_mixes_labels():
    x = RNG.uniform(0, 1, (40, 10, 12, 2)).astype(np.float32)
    layer = layers.CutMix(seed=3)
    out = layer({"images": x, "labels": np.eye(40, dtype=np.float32), "segmentation_masks": x[..., :1]})
    w, partner = _mix_from_labels(out["labels"].numpy())
    y = out["images"].numpy()
    for i in range(40):
        pasted = np.all(y[i] == x[partner[i]], axis=-1) & np.any(x[i] != x[partner[i]], axis=-1)
        assert np.all((y[i] == x[i]) | (y[i] == x[partner[i]]))
        if pasted.any():                                  # a box of the partner image
            r, c = np.nonzero(pasted)
            assert pasted[r.min():r.max() + 1, c.min():c.max() + 1].all()
            assert abs((1 - w[i]) - pasted.sum() / 120) < 0.25
    np.testing.assert_array_equal(out["segmentation_masks"].numpy(), y[..., :1])   # masks follow the images
    # one image and inference: unchanged (float32, as Keras)
    one = layers.CutMix(seed=1)(IMAGES[0])
    np.testing.assert_array_equal(one.numpy(), IMAGES[0])
    ints = IMAGES.astype(np.int32)
    inf = layers.CutMix()(ints, training=False)
    assert inf.dtype == "float32" and np.array_equal(inf.numpy(), ints)
    run_layer_test(layers.CutMix, {"seed": 2}, (1, 5, 5, 3), input_data=IMAGES[:1, :5, :5],
                   expected_output=IMAGES[:1, :5, :5])   # a batch of one mixes with itself
    with pytest.raises(ValueError, match=r"CutMix: `factor` must be a number .* \[0, 1\]"):
        layers.CutMix(factor=2)


def test_mix_layers_keras_transform_parity():
    keras = _keras()
    x, b = IMAGES, IMAGES.shape[0]
    labels = np.eye(b, dtype=np.float32)
    w = RNG.uniform(0, 1, b).astype(np.float32)
    perm = RNG.permutation(b)
    ours, theirs = layers.MixUp(), keras.layers.MixUp()
    tr = {"mix_weight": w, "permutation_order": perm}
    np.testing.assert_allclose(ours._transform(_t(x), (_t(w), _t(perm))).numpy(),
                               np.asarray(theirs.transform_images(x, tr)), atol=1e-4)
    np.testing.assert_allclose(ours._mix_labels(labels, (_t(w), _t(perm))).numpy(),
                               np.asarray(theirs.transform_labels(labels, tr)), atol=1e-6)
    mask = np.zeros(x.shape, bool)
    mask[:, 2:5, 1:4] = True
    ours, theirs = layers.CutMix(), keras.layers.CutMix()
    tr = {"mix_weight": w, "permutation_order": perm, "batch_masks": mask}
    np.testing.assert_allclose(ours._transform(_t(x), (_t(w), _t(perm), _t(mask))).numpy(),
                               np.asarray(theirs.transform_images(x, tr)))
    np.testing.assert_allclose(ours._mix_labels(labels, (_t(w), _t(perm), _t(mask))).numpy(),
                               np.asarray(theirs.transform_labels(labels, tr)), atol=1e-6)
    for name, kw in [("MixUp", {"alpha": 0.7, "seed": 2}), ("CutMix", {"factor": 0.4, "seed": 1}),
                     ("RandAugment", {"num_ops": 3, "factor": 0.4, "value_range": (0, 1)}),
                     ("AugMix", {"num_chains": 2, "chain_depth": 4, "alpha": 0.5, "all_ops": False,
                                 "interpolation": "nearest"})]:
        _config_parity(getattr(layers, name)(**kw), getattr(keras.layers, name)(**kw))
    ints = x.astype(np.int32)
    for name in ("MixUp", "CutMix", "RandAugment", "AugMix"):
        a, k = getattr(layers, name)()(ints, training=False), np.asarray(getattr(keras.layers, name)()(ints,
                                                                                                   training=False))
        assert a.dtype == str(k.dtype) and np.array_equal(a.numpy(), k), name
    # RandAugment's and AugMix's sub-layers get Keras's factors
    ours, theirs = layers.RandAugment(factor=0.35), keras.layers.RandAugment(factor=0.35)
    for sub in layers.RandAugment._AUGMENT_LAYERS:
        mine, kera = getattr(ours, sub).get_config(), getattr(theirs, sub).get_config()
        for k in mine:
            if k in kera and k not in ("name", "seed", "dtype"):
                assert mine[k] == kera[k], (sub, k, mine[k], kera[k])


def test_rand_augment():
    layer = layers.RandAugment(num_ops=2, factor=0.3, seed=5)
    x = _t(IMAGES)
    steps = layer._draw(x, layer.generator)
    assert len(steps) == 2 and all(0 <= i < 11 for i, _ in steps)
    y = layer._transform(x, steps).numpy()
    ref = x
    for i, params in steps:                                   # the chosen sub-layers' transforms, in order
        ref = layer._augment_layers[i]._transform(ref, params)
    np.testing.assert_array_equal(y, ref.numpy())
    picks = np.concatenate([[i for i, _ in layers.RandAugment(num_ops=3, seed=s)._draw(x, SeedGenerator(s))]
                            for s in range(60)])
    assert set(picks.tolist()) == set(range(11))               # every augmentation is chosen
    a, b = layers.RandAugment(seed=7), layers.RandAugment(seed=7)
    np.testing.assert_array_equal(a(IMAGES).numpy(), b(IMAGES).numpy())
    out = layers.RandAugment(value_range=(0, 1), seed=8)(IMAGES / 255).numpy()
    assert out.shape == IMAGES.shape and np.isfinite(out).all()
    run_layer_test(layers.RandAugment, {"num_ops": 0}, IMAGES.shape, input_data=IMAGES, expected_output=IMAGES)
    with pytest.raises(ValueError, match="`num_ops` must be an integer >= 0"):
        layers.RandAugment(num_ops=-1)
    with pytest.raises(ValueError, match="`interpolation` must be one of"):
        layers.RandAugment(interpolation="bicubic")


def test_aug_mix():
    layer = layers.AugMix(seed=3)
    names = [type(l).__name__ for l in layer._augment_layers]
    assert len(names) == 11 and len(layers.AugMix(all_ops=False)._augment_layers) == 7
    x = _t(IMAGES)
    ac = names.index("AutoContrast")
    eq = names.index("Equalization")
    weights = _t(np.array([0.25, 0.75, 0.0], np.float32))
    chains = [[(ac, None)], [(eq, None), (ac, None)], []]
    got = layer._transform(x, (weights, _t(np.float32(0.4)), chains)).numpy()
    auto = layers.AutoContrast()(IMAGES).numpy()
    both = layers.AutoContrast()(layers.Equalization()(IMAGES)).numpy()
    want = np.clip(0.4 * IMAGES + 0.6 * (0.25 * auto + 0.75 * both), 0, 255)
    np.testing.assert_allclose(got, want, atol=1e-3)
    weights, mix, chains = layer._draw(x, layer.generator)
    assert weights.shape == (3,) and abs(float(ops.sum(weights)) - 1) < 1e-5 and 0 <= float(mix) <= 1
    assert len(chains) == 3 and all(len(c) <= 3 for c in chains)
    a, b = layers.AugMix(seed=9), layers.AugMix(seed=9)
    ya = a(IMAGES).numpy()
    np.testing.assert_array_equal(ya, b(IMAGES).numpy())
    assert ya.min() >= 0 and ya.max() <= 255 and not np.array_equal(ya, IMAGES)
    for bad, match in [({"num_chains": 0}, "`num_chains` must be an integer >= 1"),
                       ({"chain_depth": 1.5}, "`chain_depth` must be an integer >= 1"),
                       ({"alpha": -1}, "`alpha` must be a positive number"), ({"factor": 3}, "`factor` must be")]:
        with pytest.raises(ValueError, match=match):
            layers.AugMix(**bad)


MIX = [(layers.MixUp, {"alpha": 0.5}), (layers.CutMix, {}), (layers.RandAugment, {"num_ops": 2}),
       (layers.AugMix, {"num_chains": 2, "chain_depth": 2})]


@pytest.mark.parametrize("cls,kwargs", MIX, ids=[c.__name__ for c, _ in MIX])
def test_mix_layers_config_symbolic_model_and_device(cls, kwargs):
    layer = cls(**kwargs, seed=4)
    config = layer.get_config()
    clone = lamina.layers.deserialize(lamina.layers.serialize(layer))
    assert type(clone) is cls and clone.get_config() == config
    np.testing.assert_array_equal(clone(IMAGES).numpy(), layer(IMAGES).numpy())   # the same seed, the same draw
    assert cls(**kwargs)(lamina.Input((8, 7, 3))).shape == (None, 8, 7, 3)
    model = lamina.Sequential([lamina.Input((8, 7, 3)), cls(**kwargs)])
    np.testing.assert_array_equal(model.predict(IMAGES, verbose=0), IMAGES)
    cf = cls(**kwargs, seed=4, data_format="channels_first")(IMAGES.transpose(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(cf, cls(**kwargs, seed=4)(IMAGES).numpy().transpose(0, 3, 1, 2), atol=1e-3)
    assert cls(**kwargs)(np.zeros((0, 8, 7, 3), np.float32)).shape == (0, 8, 7, 3)
    with lamina.device("cpu:1"):
        x = ops.convert_to_tensor(IMAGES)
    assert cls(**kwargs)(x).device.name == "cpu:1"

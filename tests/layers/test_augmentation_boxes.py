"""Tests for the dict inputs of the image preprocessing layers (layers/preprocessing_boxes.py):
{"images", "bounding_boxes", "labels", "segmentation_masks"} with `bounding_box_format`.

(a) consistency: images holding one filled rectangle per box; after a seeded layer, each box
    must frame its rectangle's pixels (exactly for flips, crops, resizes and whole-pixel
    translations; within about a pixel for rotations, zooms, shears and perspective warps);
(b) parity with Keras 3 (skipped without keras): the deterministic paths (Resizing, CenterCrop,
    fixed-factor zoom / rotation / translation, inference) called on the same dict, and the
    random layers through Keras's transform_* methods given lamina's draw;
(c) errors, (d) configs, (e) one image (rank 3)."""
import copy

import numpy as np
import pytest

from lamina import layers, ops
from keras_ref import keras_or_none

H, W = 24, 32
# one box per image, "xyxy" pixel edges
BOXES = np.array([[[4, 6, 14, 16]], [[18, 2, 28, 9]], [[9, 12, 23, 21]]], np.float32)
LABELS = np.array([[1], [2], [3]], np.int32)


def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


def _rect_images(boxes=BOXES, h=H, w=W):
    """(batch, h, w, 1) images and masks: 1 inside each image's box."""
    out = np.zeros((boxes.shape[0], h, w, 1), np.float32)
    for i, b in enumerate(boxes):
        x1, y1, x2, y2 = b[0].astype(int)
        out[i, y1:y2, x1:x2, 0] = 1.0
    return out


def _extent(img, threshold=0.5):
    """"xyxy" pixel-edge box of the pixels above `threshold` (None if none)."""
    ys, xs = np.nonzero(img[..., 0] > threshold)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _data(images=None, boxes=BOXES, labels=LABELS, fmt_boxes=None):
    images = _rect_images() if images is None else images
    return {"images": images.copy(),
            "bounding_boxes": {"boxes": (boxes if fmt_boxes is None else fmt_boxes).copy(), "labels": labels.copy()},
            "labels": np.eye(boxes.shape[0], dtype=np.float32),
            "segmentation_masks": _rect_images(boxes, images.shape[1], images.shape[2])}


def _check_consistent(layer, atol, data=None, training=True):
    data = _data() if data is None else data
    out = layer(data, training=training)
    assert out is data          # Keras updates and returns the dict it is given
    images = out["images"].numpy()
    masks = out["segmentation_masks"].numpy()
    boxes = out["bounding_boxes"]["boxes"].numpy()
    labels = out["bounding_boxes"]["labels"].numpy()
    assert boxes.dtype == np.float32
    for i in range(images.shape[0]):
        want = _extent(images[i])
        if want is None:              # the rectangle left the image: no area, label -1
            assert labels[i, 0] == -1
            continue
        np.testing.assert_allclose(boxes[i, 0], want, atol=atol, err_msg=f"{type(layer).__name__} image {i}")
        got_mask = _extent(masks[i])
        np.testing.assert_allclose(got_mask, want, atol=max(atol, 1.0), err_msg="mask")
        assert labels[i, 0] == LABELS[i, 0]
    return out


# ---- (a) consistency ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_flip_consistent(mode, seed):
    _check_consistent(layers.RandomFlip(mode, seed=seed, bounding_box_format="xyxy"), atol=0)


@pytest.mark.parametrize("kwargs", [{}, {"crop_to_aspect_ratio": True}, {"pad_to_aspect_ratio": True}])
def test_resizing_consistent(kwargs):
    # an integer scale (x2 / x0.5) keeps the nearest-resized rectangles exact
    _check_consistent(layers.Resizing(48, 64, interpolation="nearest", bounding_box_format="xyxy", **kwargs), atol=0)
    _check_consistent(layers.Resizing(12, 16, interpolation="nearest", bounding_box_format="xyxy", **kwargs), atol=1)
    _check_consistent(layers.Resizing(30, 30, interpolation="nearest", bounding_box_format="xyxy", **kwargs),
                      atol=1.5)


def test_center_crop_consistent():
    _check_consistent(layers.CenterCrop(20, 24, bounding_box_format="xyxy"), atol=0)
    _check_consistent(layers.CenterCrop(30, 30, bounding_box_format="xyxy"), atol=1.5)   # smaller: crop + resize


@pytest.mark.parametrize("seed", [1, 5])
def test_random_crop_consistent(seed):
    _check_consistent(layers.RandomCrop(16, 20, seed=seed, bounding_box_format="xyxy"), atol=0)
    _check_consistent(layers.RandomCrop(16, 20, seed=seed, bounding_box_format="xyxy"), atol=1.5, training=False)
    _check_consistent(layers.RandomCrop(30, 20, seed=seed, bounding_box_format="xyxy"), atol=1.5)


@pytest.mark.parametrize("seed", [1, 2])
def test_translation_consistent(seed):
    # whole-pixel shifts (fractions of 24 x 32) with nearest sampling: exact
    layer = layers.RandomTranslation((0.125, 0.125), (-0.25, -0.25), fill_mode="constant", interpolation="nearest",
                                     seed=seed, bounding_box_format="xyxy")
    _check_consistent(layer, atol=0)
    layer = layers.RandomTranslation(0.3, 0.3, fill_mode="constant", seed=seed, bounding_box_format="xyxy")
    _check_consistent(layer, atol=1.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_zoom_rotation_shear_consistent(seed):
    kw = dict(fill_mode="constant", seed=seed, bounding_box_format="xyxy")
    _check_consistent(layers.RandomZoom(0.3, **kw), atol=1.5)
    _check_consistent(layers.RandomZoom((-0.3, 0.3), (-0.2, 0.4), **kw), atol=1.5)
    _check_consistent(layers.RandomRotation(0.1, **kw), atol=1.5)
    _check_consistent(layers.RandomShear(0.3, 0.2, **kw), atol=1.5)
    _check_consistent(layers.RandomPerspective(scale=0.3, seed=seed, bounding_box_format="xyxy"), atol=1.5)


@pytest.mark.parametrize("fmt", ["rel_xyxy", "xywh", "center_xywh", "yxyx", "rel_center_xywh"])
def test_formats(fmt):
    """A box format is converted to "xyxy" for the move and back: the same boxes as "xyxy" gives."""
    from lamina.utils import bounding_boxes as bb
    for make in (lambda f: layers.RandomFlip(seed=3, bounding_box_format=f),
                 lambda f: layers.RandomRotation(0.1, seed=3, bounding_box_format=f),
                 lambda f: layers.Resizing(12, 40, bounding_box_format=f),
                 lambda f: layers.RandomCrop(16, 20, seed=3, bounding_box_format=f)):
        ref = make("xyxy")(_data())["bounding_boxes"]["boxes"].numpy()
        layer = make(fmt)
        given = bb.convert_format(BOXES, "xyxy", fmt, height=H, width=W).numpy()
        out = layer(_data(fmt_boxes=given))
        oh, ow = out["images"].shape[1:3]
        back = bb.convert_format(out["bounding_boxes"]["boxes"], fmt, "xyxy", height=oh, width=ow).numpy()
        np.testing.assert_allclose(back, ref, atol=1e-3)


def test_colour_layers_pass_boxes_masks_labels():
    data = _data(images=np.random.default_rng(0).uniform(0, 255, (3, H, W, 3)).astype(np.float32))
    for layer in [layers.RandomBrightness(0.3), layers.RandomContrast(0.5), layers.RandomGrayscale(1.0),
                  layers.RandomInvert(), layers.Solarization(0.5, 0.5), layers.AutoContrast(),
                  layers.RandomSaturation(0.5), layers.RandomHue(0.5), layers.RandomColorDegeneration(0.5),
                  layers.RandomPosterization(4), layers.Equalization(), layers.RandomColorJitter(brightness_factor=0.5, contrast_factor=0.5),
                  layers.RandomSharpness(0.5), layers.RandomGaussianBlur(), layers.RandomErasing(),
                  layers.ContrastLimitedAdaptiveHistogramEqualization(), layers.AugMix()]:
        layer.bounding_box_format = "xyxy"
        d = copy.deepcopy(data)
        out = layer(d)
        name = type(layer).__name__
        assert out["images"].shape == (3, H, W, 3), name
        np.testing.assert_array_equal(np.asarray(out["bounding_boxes"]["boxes"]), BOXES, err_msg=name)
        np.testing.assert_array_equal(np.asarray(out["bounding_boxes"]["labels"]), LABELS, err_msg=name)
        np.testing.assert_array_equal(np.asarray(out["labels"]), data["labels"], err_msg=name)
        if name != "AugMix":     # AugMix blends the masks with its chains' geometry
            np.testing.assert_array_equal(np.asarray(out["segmentation_masks"]), data["segmentation_masks"],
                                          err_msg=name)


def test_images_same_as_image_path():
    """A dict call gives the images an image call gives, with the same seed."""
    for make in (lambda: layers.RandomFlip(seed=4, bounding_box_format="xyxy"),
                 lambda: layers.RandomRotation(0.2, seed=4, bounding_box_format="xyxy"),
                 lambda: layers.RandomCrop(16, 20, seed=4, bounding_box_format="xyxy"),
                 lambda: layers.RandomShear(0.3, seed=4, bounding_box_format="xyxy"),
                 lambda: layers.RandomPerspective(seed=4, bounding_box_format="xyxy"),
                 lambda: layers.RandomElasticTransform(seed=4),
                 lambda: layers.RandAugment(seed=4, bounding_box_format="xyxy")):
        images = np.random.default_rng(1).uniform(0, 255, (3, H, W, 3)).astype(np.float32)
        want = make()(images.copy()).numpy()
        data = {"images": images.copy()}
        np.testing.assert_allclose(make()(data)["images"].numpy(), want, atol=1e-4)


def test_rand_augment_moves_boxes_with_images():
    for seed in range(6):
        layer = layers.RandAugment(num_ops=2, factor=0.2, interpolation="nearest", seed=seed,
                                   bounding_box_format="xyxy")
        for sub in (layer.random_shear, layer.random_translation, layer.random_rotation):
            sub.fill_mode = "constant"     # reflected copies of a rectangle would widen its extent
        images = _rect_images() * 255.0
        data = _data(images=np.repeat(images, 3, axis=-1))
        out = layer(data)
        # the colour steps change values, not places: the masks hold the rectangles' places
        masks = out["segmentation_masks"].numpy()
        boxes = out["bounding_boxes"]["boxes"].numpy()
        for i in range(3):
            want = _extent(masks[i])
            if want is not None:
                np.testing.assert_allclose(boxes[i, 0], want, atol=2.0)


def test_mixup_cutmix_labels_and_boxes():
    data = _data()
    out = layers.MixUp(alpha=0.5, seed=3, bounding_box_format="xyxy")(data)
    boxes = out["bounding_boxes"]["boxes"].numpy()
    labels = out["bounding_boxes"]["labels"].numpy()
    assert boxes.shape == (3, 2, 4) and labels.shape == (3, 2)
    np.testing.assert_array_equal(boxes[:, 0], BOXES[:, 0])
    perm = [int(np.nonzero((BOXES[:, 0] == boxes[i, 1]).all(-1))[0][0]) for i in range(3)]
    np.testing.assert_array_equal(labels[:, 1], LABELS[perm, 0])
    mixed = out["labels"].numpy()
    np.testing.assert_allclose(mixed.sum(-1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="CutMix.*bounding boxes cannot be cut"):
        layers.CutMix(seed=1, bounding_box_format="xyxy")(_data())
    d = _data()
    del d["bounding_boxes"]
    out = layers.CutMix(seed=1)(d)
    np.testing.assert_allclose(out["labels"].numpy().sum(-1), 1.0, atol=1e-5)
    # the masks are cut like the images
    np.testing.assert_array_equal(out["segmentation_masks"].numpy(), out["images"].numpy())


def test_inference_leaves_everything():
    for layer in [layers.RandomFlip(seed=1, bounding_box_format="xyxy"),
                  layers.RandomRotation(0.3, seed=1, bounding_box_format="xyxy"),
                  layers.RandomZoom(0.3, seed=1, bounding_box_format="xyxy"),
                  layers.RandomShear(0.3, seed=1, bounding_box_format="xyxy"),
                  layers.MixUp(bounding_box_format="xyxy")]:
        out = layer(_data(), training=False)
        np.testing.assert_array_equal(np.asarray(out["bounding_boxes"]["boxes"]), BOXES)
        np.testing.assert_array_equal(np.asarray(out["segmentation_masks"]), _rect_images())
        np.testing.assert_array_equal(np.asarray(out["images"]), _rect_images())


def test_ragged_box_lists():
    """A batch of per-image box lists of different lengths is padded with zero boxes labelled -1."""
    data = {"images": _rect_images(),
            "bounding_boxes": {"boxes": [[[4, 6, 14, 16]], [[18, 2, 28, 9], [1, 1, 3, 3]], []],
                               "labels": [[1], [2, 5], []]}}
    out = layers.RandomFlip("horizontal", seed=1, bounding_box_format="xyxy")(data, training=False)
    boxes = out["bounding_boxes"]["boxes"].numpy()
    assert boxes.shape == (3, 2, 4)
    np.testing.assert_array_equal(boxes[0, 1], [0, 0, 0, 0])
    np.testing.assert_array_equal(out["bounding_boxes"]["labels"].numpy(), [[1, -1], [2, 5], [-1, -1]])


# ---- (b) parity with Keras ----------------------------------------------------------------------

def _keras_call(klayer, data, training=True):
    out = klayer(copy.deepcopy(data), training=training)
    return {k: (np.asarray(v) if not isinstance(v, dict) else {kk: np.asarray(vv) for kk, vv in v.items()})
            for k, v in out.items()}


def _compare(ours, theirs, image_atol=1e-3, box_atol=1e-3):
    np.testing.assert_allclose(ours["images"].numpy(), theirs["images"], atol=image_atol)
    np.testing.assert_allclose(ours["bounding_boxes"]["boxes"].numpy(), theirs["bounding_boxes"]["boxes"],
                               atol=box_atol)
    np.testing.assert_array_equal(ours["bounding_boxes"]["labels"].numpy(), theirs["bounding_boxes"]["labels"])
    np.testing.assert_allclose(ours["segmentation_masks"].numpy(), theirs["segmentation_masks"], atol=1e-5)


PARITY_BOXES = np.array([[[4, 6, 14, 16], [1, 1, 30, 20]], [[18, 2, 28, 9], [-5, 3, 8, 30]],
                         [[9, 12, 23, 21], [0, 0, 32, 24]]], np.float32)
PARITY_LABELS = np.array([[1, 4], [2, 5], [3, 6]], np.int32)


def _parity_data(fmt="xyxy"):
    from lamina.utils import bounding_boxes as bb
    rng = np.random.default_rng(2)
    boxes = bb.convert_format(PARITY_BOXES, "xyxy", fmt, height=H, width=W).numpy()
    return {"images": rng.uniform(0, 255, (3, H, W, 3)).astype(np.float32),
            "bounding_boxes": {"boxes": boxes, "labels": PARITY_LABELS.copy()},
            "segmentation_masks": rng.integers(0, 4, (3, H, W, 1)).astype(np.float32)}


@pytest.mark.parametrize("fmt", ["xyxy", "rel_xyxy", "xywh"])
@pytest.mark.parametrize("size,kwargs", [((12, 16), {}), ((30, 20), {}), ((30, 20), {"crop_to_aspect_ratio": True}),
                                         ((30, 20), {"pad_to_aspect_ratio": True}),
                                         ((10, 40), {"pad_to_aspect_ratio": True})])
def test_resizing_matches_keras(size, kwargs, fmt):
    keras = _keras()
    data = _parity_data(fmt)
    ours = layers.Resizing(*size, bounding_box_format=fmt, **kwargs)(copy.deepcopy(data))
    theirs = _keras_call(keras.layers.Resizing(*size, bounding_box_format=fmt, **kwargs), data)
    _compare(ours, theirs, box_atol=1e-3)


@pytest.mark.parametrize("size", [(20, 24), (24, 32), (30, 30), (10, 30)])
def test_center_crop_matches_keras(size):
    keras = _keras()
    data = _parity_data()
    ours = layers.CenterCrop(*size, bounding_box_format="xyxy")(copy.deepcopy(data))
    theirs = _keras_call(keras.layers.CenterCrop(*size, bounding_box_format="xyxy"), data)
    np.testing.assert_allclose(ours["images"].numpy(), theirs["images"], atol=1e-3)
    np.testing.assert_allclose(ours["bounding_boxes"]["boxes"].numpy(), theirs["bounding_boxes"]["boxes"], atol=1e-3)
    np.testing.assert_array_equal(ours["bounding_boxes"]["labels"].numpy(), theirs["bounding_boxes"]["labels"])
    if size[0] <= H and size[1] <= W:   # Keras resizes masks bilinearly on the smaller-input path; lamina nearest
        np.testing.assert_allclose(ours["segmentation_masks"].numpy(), theirs["segmentation_masks"], atol=1e-5)


@pytest.mark.parametrize("fmt", ["xyxy", "rel_xyxy", "center_xywh"])
@pytest.mark.parametrize("make", [
    lambda m, **k: m.RandomZoom(height_factor=(0.2, 0.2), fill_mode="constant", **k),
    lambda m, **k: m.RandomZoom(height_factor=(-0.3, -0.3), width_factor=(0.1, 0.1), fill_mode="constant", **k),
    lambda m, **k: m.RandomTranslation((0.1, 0.1), (0.2, 0.2), fill_mode="constant", **k),
    lambda m, **k: m.RandomTranslation((-0.2, -0.2), (-0.15, -0.15), **k),
])
def test_fixed_factor_matches_keras(make, fmt):
    keras = _keras()
    data = _parity_data(fmt)
    ours = make(layers, bounding_box_format=fmt)(copy.deepcopy(data))
    theirs = _keras_call(make(keras.layers, bounding_box_format=fmt), data)
    _compare(ours, theirs, image_atol=1e-2, box_atol=1e-3)


def test_rotation_matches_keras():
    """Keras's RandomRotation moves the boxes as "xyxy" whatever the format (a Keras bug): compare
    in "xyxy"; a quarter turn of a square image keeps nearest sampling exact."""
    keras = _keras()
    for factor, size in (((0.25, 0.25), (W, W)), ((0.05, 0.05), (H, W)), ((-0.1, -0.1), (H, W))):
        rng = np.random.default_rng(3)
        data = {"images": rng.uniform(0, 255, (3,) + size + (3,)).astype(np.float32),
                "bounding_boxes": {"boxes": PARITY_BOXES.copy(), "labels": PARITY_LABELS.copy()},
                "segmentation_masks": np.kron(rng.integers(0, 4, (3, size[0] // 4, size[1] // 4, 1)),
                                              np.ones((1, 4, 4, 1))).astype(np.float32)}
        ours = layers.RandomRotation(factor, fill_mode="constant", bounding_box_format="xyxy")(copy.deepcopy(data))
        theirs = _keras_call(keras.layers.RandomRotation(factor, fill_mode="constant", bounding_box_format="xyxy"),
                             data)
        np.testing.assert_allclose(ours["images"].numpy(), theirs["images"], atol=1e-2)
        np.testing.assert_allclose(ours["bounding_boxes"]["boxes"].numpy(), theirs["bounding_boxes"]["boxes"],
                                   atol=1e-3)
        np.testing.assert_array_equal(ours["bounding_boxes"]["labels"].numpy(), theirs["bounding_boxes"]["labels"])
        differ = ours["segmentation_masks"].numpy() != theirs["segmentation_masks"]
        assert differ.mean() < 0.01     # nearest sampling: a pixel exactly between two may round the other way


def _keras_transform(klayer, data, transformation):
    d = copy.deepcopy(data)
    k = klayer
    bb = {"boxes": d["bounding_boxes"]["boxes"], "labels": d["bounding_boxes"]["labels"]}
    return {"images": np.asarray(k.transform_images(d["images"], transformation, training=True)),
            "bounding_boxes": {kk: np.asarray(v) for kk, v in
                               k.transform_bounding_boxes(bb, transformation, training=True).items()},
            "segmentation_masks": np.asarray(k.transform_segmentation_masks(d["segmentation_masks"], transformation,
                                                                             training=True))}


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_flip_matches_keras_given_the_draw(mode):
    keras = _keras()
    data = _parity_data("rel_xyxy")
    layer = layers.RandomFlip(mode, seed=7, bounding_box_format="rel_xyxy")
    flips = layer._draw(ops.convert_to_tensor(data["images"]), layer.generator).numpy()
    layer = layers.RandomFlip(mode, seed=7, bounding_box_format="rel_xyxy")
    ours = layer(copy.deepcopy(data))
    klayer = keras.layers.RandomFlip(mode, bounding_box_format="rel_xyxy")
    theirs = _keras_transform(klayer, data, {"flips": flips, "input_shape": data["images"].shape})
    # Keras 3.15 clips the relative boxes to the pixel size ([0, 32] x [0, 24]), so a box reaching
    # past the image keeps a coordinate above 1; lamina clips it to the image, like its other layers
    theirs["bounding_boxes"]["boxes"] = np.clip(theirs["bounding_boxes"]["boxes"], 0.0, 1.0)
    _compare(ours, theirs)


def test_shear_matches_keras_given_the_draw():
    """One shear axis and a square image: Keras's relative-coordinate box shear is then exact."""
    keras = _keras()
    rng = np.random.default_rng(4)
    data = {"images": rng.uniform(0, 255, (3, W, W, 3)).astype(np.float32),
            "bounding_boxes": {"boxes": PARITY_BOXES.copy(), "labels": PARITY_LABELS.copy()},
            "segmentation_masks": rng.integers(0, 4, (3, W, W, 1)).astype(np.float32)}
    for xf, yf in ((0.3, 0.0), (0.0, 0.25)):
        make = lambda seed: layers.RandomShear(x_factor=xf, y_factor=yf, fill_mode="constant", seed=seed,  # noqa
                                               bounding_box_format="xyxy")
        m = make(5)._draw(ops.convert_to_tensor(data["images"]), make(5).generator).numpy()
        layer = make(5)
        ours = layer(copy.deepcopy(data))
        klayer = keras.layers.RandomShear(x_factor=xf, y_factor=yf, fill_mode="constant", bounding_box_format="xyxy")
        shear = np.stack([m[:, 1], m[:, 3]], axis=1).astype(np.float32)
        theirs = _keras_transform(klayer, data, {"shear_factor": shear, "input_shape": data["images"].shape})
        np.testing.assert_allclose(ours["images"].numpy(), theirs["images"], atol=1e-2)
        np.testing.assert_allclose(ours["bounding_boxes"]["boxes"].numpy(), theirs["bounding_boxes"]["boxes"],
                                   atol=1e-3)
        np.testing.assert_array_equal(ours["bounding_boxes"]["labels"].numpy(), theirs["bounding_boxes"]["labels"])
        differ = ours["segmentation_masks"].numpy() != theirs["segmentation_masks"]
        assert differ.mean() < 0.01


def test_perspective_matches_keras_given_the_draw():
    keras = _keras()
    data = _parity_data()
    make = lambda: layers.RandomPerspective(factor=1.0, scale=0.4, seed=11, bounding_box_format="xyxy")  # noqa
    apply, start, end = make()._draw(ops.convert_to_tensor(data["images"]), make().generator)
    ours = make()(copy.deepcopy(data))
    klayer = keras.layers.RandomPerspective(factor=1.0, scale=0.4, bounding_box_format="xyxy")
    t = {"apply_perspective": apply.numpy(), "start_points": np.asarray(start), "end_points": end.numpy(),
         "input_shape": data["images"].shape}
    theirs = _keras_transform(klayer, data, t)
    np.testing.assert_allclose(ours["images"].numpy(), theirs["images"], atol=1e-2)
    np.testing.assert_allclose(ours["bounding_boxes"]["boxes"].numpy(), theirs["bounding_boxes"]["boxes"], atol=1e-2)
    np.testing.assert_array_equal(ours["bounding_boxes"]["labels"].numpy(), theirs["bounding_boxes"]["labels"])
    assert (ours["segmentation_masks"].numpy() != theirs["segmentation_masks"]).mean() < 0.01


@pytest.mark.parametrize("name,kwargs", [("RandomBrightness", {"factor": 0.2}), ("RandomContrast", {"factor": 0.2}),
                                         ("RandomFlip", {}), ("RandomRotation", {"factor": 0.2}),
                                         ("RandomZoom", {"height_factor": 0.2})])
def test_inference_matches_keras(name, kwargs):
    keras = _keras()
    data = _parity_data()
    ours = getattr(layers, name)(bounding_box_format="xyxy", **kwargs)(copy.deepcopy(data), training=False)
    theirs = _keras_call(getattr(keras.layers, name)(bounding_box_format="xyxy", **kwargs), data, training=False)
    _compare(ours, theirs, image_atol=1e-5, box_atol=0)


# ---- (c) errors ----------------------------------------------------------------------------------

def test_errors():
    with pytest.raises(ValueError, match="didn't specify a bounding box format.*RandomFlip layer"):
        layers.RandomFlip()(_data())
    with pytest.raises(ValueError, match="`bounding_box_format` must be None or one of"):
        layers.RandomFlip(bounding_box_format="xyz")
    with pytest.raises(ValueError, match=r"bounding_boxes\['boxes'\] of shape \(batch, num_boxes, 4\).*\(3, 5\)"):
        layers.RandomFlip(bounding_box_format="xyxy")(
            {"images": _rect_images(), "bounding_boxes": {"boxes": np.zeros((3, 5)), "labels": np.zeros((3,))}})
    with pytest.raises(ValueError, match=r"bounding_boxes\['boxes'\] of shape \(batch, num_boxes, 4\).*\(3, 2, 5\)"):
        layers.RandomFlip(bounding_box_format="xyxy")(
            {"images": _rect_images(), "bounding_boxes": {"boxes": np.zeros((3, 2, 5)), "labels": np.zeros((3, 2))}})
    with pytest.raises(ValueError, match=r"one label per box.*\(3, 3\)"):
        layers.RandomFlip(bounding_box_format="xyxy")(
            {"images": _rect_images(), "bounding_boxes": {"boxes": np.zeros((3, 2, 4)), "labels": np.zeros((3, 3))}})
    with pytest.raises(ValueError, match=r"one row per image \(3 images\)"):
        layers.RandomFlip(bounding_box_format="xyxy")(
            {"images": _rect_images(), "bounding_boxes": {"boxes": np.zeros((2, 2, 4)), "labels": np.zeros((2, 2))}})
    with pytest.raises(ValueError, match="dict with the keys 'boxes' and 'labels'"):
        layers.RandomFlip(bounding_box_format="xyxy")({"images": _rect_images(), "bounding_boxes": np.zeros((3, 1, 4))})
    with pytest.raises(ValueError, match="must have an 'images' entry.*'labels'"):
        layers.RandomFlip()({"labels": np.zeros((3,))})
    with pytest.raises(ValueError, match="inputs\\['images'\\] of rank 3 .* or 4"):
        layers.RandomFlip()({"images": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="RandomElasticTransform.*bounding boxes cannot follow"):
        layers.RandomElasticTransform(bounding_box_format="xyxy")(_data())


# ---- (d) configs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: layers.RandomFlip(bounding_box_format="rel_xyxy", seed=1),
    lambda: layers.Resizing(10, 12, bounding_box_format="xywh"),
    lambda: layers.CenterCrop(10, 12, bounding_box_format="xywh"),
    lambda: layers.RandomCrop(10, 12, bounding_box_format="xyxy"),
    lambda: layers.RandomRotation(0.2, bounding_box_format="center_xywh"),
    lambda: layers.RandomShear(0.2, bounding_box_format="xyxy"),
    lambda: layers.RandomBrightness(0.2, bounding_box_format="xyxy"),
    lambda: layers.MixUp(bounding_box_format="yxyx"),
])
def test_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    assert config["bounding_box_format"] == layer.bounding_box_format
    again = type(layer).from_config(config)
    assert again.bounding_box_format == layer.bounding_box_format
    assert again.get_config() == config
    assert "bounding_box_format" not in type(layer).from_config(
        {k: v for k, v in config.items() if k != "bounding_box_format"}).get_config()


def test_config_matches_keras():
    keras = _keras()
    ours = layers.RandomFlip(bounding_box_format="xyxy").get_config()
    theirs = keras.layers.RandomFlip(bounding_box_format="xyxy").get_config()
    assert ours["bounding_box_format"] == theirs["bounding_box_format"]
    assert "bounding_box_format" not in keras.layers.RandomFlip().get_config()
    assert "bounding_box_format" not in layers.RandomFlip().get_config()


# ---- (e) one image -------------------------------------------------------------------------------

def test_unbatched():
    img = _rect_images()[0]
    for layer in [layers.RandomFlip(seed=2, bounding_box_format="xyxy"), layers.Resizing(12, 16, bounding_box_format="xyxy"),
                  layers.RandomRotation(0.1, seed=2, bounding_box_format="xyxy"),
                  layers.RandomCrop(16, 20, seed=2, bounding_box_format="xyxy")]:
        data = {"images": img.copy(), "bounding_boxes": {"boxes": BOXES[0].copy(), "labels": LABELS[0].copy()},
                "segmentation_masks": img.copy()}
        out = layer(data)
        boxes = out["bounding_boxes"]["boxes"].numpy()
        assert boxes.shape == (1, 4) and out["bounding_boxes"]["labels"].shape == (1,)
        assert out["images"].ndim == 3 and out["segmentation_masks"].ndim == 3
        np.testing.assert_allclose(boxes[0], _extent(out["images"].numpy()), atol=1.5)


def test_unbatched_matches_keras():
    keras = _keras()
    data = _parity_data()
    one = {"images": data["images"][0], "bounding_boxes": {"boxes": PARITY_BOXES[0], "labels": PARITY_LABELS[0]},
           "segmentation_masks": data["segmentation_masks"][0]}
    ours = layers.Resizing(12, 20, bounding_box_format="xyxy")(copy.deepcopy(one))
    theirs = _keras_call(keras.layers.Resizing(12, 20, bounding_box_format="xyxy"), one)
    _compare(ours, theirs)


def test_channels_first():
    data = _data()
    data["images"] = np.transpose(data["images"], (0, 3, 1, 2)).copy()
    data["segmentation_masks"] = np.transpose(data["segmentation_masks"], (0, 3, 1, 2)).copy()
    out = layers.RandomFlip(seed=1, data_format="channels_first", bounding_box_format="xyxy")(data)
    images = np.transpose(out["images"].numpy(), (0, 2, 3, 1))
    for i in range(3):
        np.testing.assert_allclose(out["bounding_boxes"]["boxes"].numpy()[i, 0], _extent(images[i]))

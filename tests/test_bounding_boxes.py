"""Tests for lamina.utils.bounding_boxes (_bounding_boxes.py) and layers.MaxNumBoundingBoxes:
hand-computed cases (format conversions and round trips, IoU / CIoU of known boxes, clipping,
crop, pad, affine moves, anchor deltas), argument errors, and Keras parity on random boxes (when
keras is installed, KERAS_BACKEND=jax)."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops, utils
from lamina.utils import bounding_boxes as bb
from keras_ref import keras_or_none

RNG = np.random.default_rng(7)
FORMATS = bb.SUPPORTED_FORMATS
H, W = 60, 80


def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


def _np(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _random_boxes(shape, low=0.0, high=50.0):
    """xyxy boxes with positive sides."""
    xy = RNG.uniform(low, high, shape + (2,))
    wh = RNG.uniform(1.0, 30.0, shape + (2,))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol)


# ---- the namespace -------------------------------------------------------------------------------

def test_namespace():
    assert utils.bounding_boxes is bb
    from lamina.utils.bounding_boxes import compute_iou, convert_format   # noqa: F401  (registered as a module)
    for name in bb.__all__:
        assert callable(getattr(bb, name))


def test_namespace_has_keras_names():
    keras = _keras()
    theirs = {n for n in dir(keras.utils.bounding_boxes) if not n.startswith("_")}
    assert theirs <= set(bb.__all__), sorted(theirs - set(bb.__all__))


# ---- convert_format ----------------------------------------------------------------------------------

BOX = np.array([[10.0, 20.0, 30.0, 40.0]], np.float32)   # xyxy
IN_FORMATS = {
    "xyxy": [10, 20, 30, 40], "yxyx": [20, 10, 40, 30], "xywh": [10, 20, 20, 20],
    "center_xywh": [20, 30, 20, 20], "center_yxhw": [30, 20, 20, 20],
    "rel_xyxy": [10 / 300, 20 / 200, 30 / 300, 40 / 200], "rel_yxyx": [20 / 200, 10 / 300, 40 / 200, 30 / 300],
    "rel_xywh": [10 / 300, 20 / 200, 20 / 300, 20 / 200], "rel_center_xywh": [20 / 300, 30 / 200, 20 / 300, 20 / 200],
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_format_known_box(fmt):
    out = bb.convert_format(BOX, "xyxy", fmt, height=200, width=300)
    assert out.dtype == "float32" and out.shape == (1, 4)
    close(out, [IN_FORMATS[fmt]])
    close(bb.convert_format(np.array([IN_FORMATS[fmt]]), fmt.upper(), "XYXY", height=200, width=300), BOX, 1e-4)


@pytest.mark.parametrize("source", FORMATS)
def test_convert_format_round_trips(source):
    boxes = _random_boxes((2, 3))
    start = bb.convert_format(boxes, "xyxy", source, height=H, width=W)
    for target in FORMATS:
        there = bb.convert_format(start, source, target, height=H, width=W)
        close(bb.convert_format(there, target, source, height=H, width=W), start, 1e-4)


def test_convert_format_dict_dtype_and_relative_pairs():
    labels = np.array([3])
    d = {"boxes": BOX, "labels": labels}
    out = bb.convert_format(d, "xyxy", "xywh")
    close(out["boxes"], [[10, 20, 20, 20]])
    assert out["labels"] is labels and d["boxes"] is BOX      # a new dict: the given one is left alone
    assert bb.convert_format(BOX.astype(np.int32), "xyxy", "xyxy").dtype == "float32"
    assert bb.convert_format(BOX, "xyxy", "xywh", dtype="int32").dtype == "int32"
    # relative to relative needs the sizes (as in Keras) but does not use them
    close(bb.convert_format([[0.1, 0.2, 0.3, 0.6]], "rel_xyxy", "rel_xywh", height=1, width=1), [[0.1, 0.2, 0.2, 0.4]])


def test_convert_format_errors():
    with pytest.raises(ValueError, match=r"last axis of 4 .* received boxes.shape=\(2, 3\)"):
        bb.convert_format(np.zeros((2, 3)), "xyxy", "xywh")
    with pytest.raises(ValueError, match="`source` must be one of .* received source='xyz'"):
        bb.convert_format(BOX, "xyz", "xywh")
    with pytest.raises(ValueError, match="`target` must be one of"):
        bb.convert_format(BOX, "xyxy", None)
    with pytest.raises(ValueError, match="needs the image's `height` and `width`.*height=None"):
        bb.convert_format(BOX, "xyxy", "rel_xyxy", width=10)
    with pytest.raises(ValueError, match="dict with a 'boxes' entry"):
        bb.convert_format({"labels": [1]}, "xyxy", "xywh")


# ---- clip, crop, pad, affine --------------------------------------------------------------------------

def test_clip_to_image_size_known_boxes():
    boxes = np.array([[-10, -20, 150, 160], [50, 40, 70, 80], [130, 10, 150, 20]], np.float32)
    out = bb.clip_to_image_size({"boxes": boxes, "labels": np.array([0, 1, 2], np.int32), "extra": "kept"},
                                height=100, width=120)
    close(out["boxes"], [[0, 0, 120, 100], [50, 40, 70, 80], [120, 10, 120, 20]])
    np.testing.assert_array_equal(_np(out["labels"]), [0, 1, -1])     # no area left: label -1
    assert out["labels"].dtype == "int32" and out["extra"] == "kept"
    rel = bb.clip_to_image_size({"boxes": [[-0.5, 0.2, 0.5, 1.5]]}, bounding_box_format="rel_xyxy")
    close(rel["boxes"], [[0, 0.2, 0.5, 1.0]])
    assert "labels" not in rel


def test_clip_to_image_size_errors():
    with pytest.raises(NotImplementedError,
                       match="bounding_box_format in .*'xyxy', 'rel_xyxy'.* received bounding_box_format='xywh'"):
        bb.clip_to_image_size({"boxes": BOX}, 10, 10, bounding_box_format="xywh")
    with pytest.raises(ValueError, match="`height` and `width` must be given"):
        bb.clip_to_image_size({"boxes": BOX}, height=10)
    with pytest.raises(ValueError, match="must be a dict with a 'boxes' entry"):
        bb.clip_to_image_size(BOX, 10, 10)


def test_crop_and_pad_known_boxes():
    boxes = np.array([[10, 20, 50, 60], [70, 80, 100, 120]], np.float32)
    close(bb.crop(boxes, top=10, left=20, height=40, width=30), [[0, 10, 30, 40], [30, 40, 30, 40]])
    close(bb.crop(boxes, 10, 20, None, None), [[0, 10, 30, 50], [50, 70, 80, 110]])   # no size: no upper clip
    close(bb.pad(boxes, top=5, left=7), [[17, 25, 57, 65], [77, 85, 107, 125]])
    assert bb.pad(boxes[None], 1, 2).shape == (1, 2, 4)
    for fn in (bb.crop, bb.pad):
        with pytest.raises(NotImplementedError, match="received bounding_box_format='yxyx'"):
            fn(boxes, 1, 1, 10, 10, bounding_box_format="yxyx")
    with pytest.raises(ValueError, match="last axis of 4"):
        bb.pad(np.zeros((2, 5)), 1, 1)


def test_affine_transform_known_moves():
    boxes = np.array([[[4, 4, 6, 6], [0, 0, 2, 10]]], np.float32)
    none = dict(angle=[0.0], translate_x=[0.0], translate_y=[0.0], scale=[1.0], shear_x=[0.0], shear_y=[0.0])
    close(bb.affine_transform(boxes, **none, height=11, width=11), boxes)
    # translation by fractions of (size - 1) pixels
    moved = bb.affine_transform(boxes, **{**none, "translate_x": [0.1], "translate_y": [-0.2]}, height=11, width=11)
    close(moved, boxes + np.array([1, -2, 1, -2], np.float32))
    # scale 2 about the centre (5, 5)
    close(bb.affine_transform(boxes[:, :1], **{**none, "scale": [2.0]}, height=11, width=11), [[[3, 3, 7, 7]]])
    # a quarter turn about the centre: the tall box becomes wide, its bounds stay in the image
    turned = _np(bb.affine_transform(boxes[:, 1:], **{**none, "angle": [90.0]}, height=11, width=11))[0, 0]
    w, h = turned[2] - turned[0], turned[3] - turned[1]
    np.testing.assert_allclose([w, h], [10, 2], atol=1e-4)
    # numbers stand for every image; a single (N, 4) set is a batch of one
    single = bb.affine_transform(boxes[0], 0.0, 0.1, 0.0, 1.0, 0.0, 0.0, 11, 11)
    assert single.shape == (2, 4)
    close(single, boxes[0] + np.array([1, 0, 1, 0], np.float32))


def test_affine_transform_errors():
    args = ([0.0], [0.0], [0.0], [1.0], [0.0], [0.0], 10, 10)
    with pytest.raises(NotImplementedError, match="received bounding_box_format='xywh'"):
        bb.affine_transform(BOX, *args, bounding_box_format="xywh")
    with pytest.raises(ValueError, match=r"`scale` must be a number or one value per image \(batch of 1\)"):
        bb.affine_transform(BOX, [0.0], [0.0], [0.0], [1.0, 2.0], [0.0], [0.0], 10, 10)
    with pytest.raises(ValueError, match=r"must be \(N, 4\) or \(batch, N, 4\)"):
        bb.affine_transform(np.zeros((1, 1, 1, 4)), *args)


# ---- anchor deltas ---------------------------------------------------------------------------------

def test_encode_decode_known_and_round_trip():
    anchors = np.array([[0, 0, 10, 10], [10, 10, 30, 50]], np.float32)
    boxes = np.array([[2, 4, 12, 24], [10, 10, 30, 50]], np.float32)
    deltas = bb.encode_box_to_deltas(anchors, boxes, "xyxy", "xyxy")      # center_yxhw deltas
    # box 0: centre (y 14, x 7) vs anchor (5, 5), size (20, 10) vs (10, 10)
    close(deltas, [[0.9, 0.2, np.log(2.0), 0.0], [0, 0, 0, 0]])
    xywh = bb.encode_box_to_deltas(anchors, boxes, "xyxy", "xyxy", encoding_format="center_xywh",
                                   variance=[0.1, 0.1, 0.2, 0.2])
    close(xywh, [[2.0, 9.0, 0.0, np.log(2.0) / 0.2], [0, 0, 0, 0]])
    close(bb.decode_deltas_to_boxes(anchors, deltas, "xyxy", "xyxy"), boxes, 1e-4)
    close(bb.decode_deltas_to_boxes(anchors, xywh, "xyxy", "xywh", encoded_format="center_xywh",
                                    variance=[0.1, 0.1, 0.2, 0.2]), [[2, 4, 10, 20], [10, 10, 20, 40]], 1e-4)
    batched = RNG.normal(0, 0.3, (3, 2, 4)).astype(np.float32)
    back = bb.decode_deltas_to_boxes(anchors, batched, "xyxy", "rel_yxyx", image_shape=(H, W, 3))
    close(bb.encode_box_to_deltas(anchors, back, "xyxy", "rel_yxyx", image_shape=(H, W, 3)), batched, 1e-4)
    levels = bb.decode_deltas_to_boxes({3: anchors, 4: anchors[:1]}, {3: deltas, 4: _np(deltas)[:1]}, "xyxy", "xyxy")
    assert sorted(levels) == [3, 4]
    close(levels[4], boxes[:1], 1e-4)


def test_encode_decode_errors():
    a = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="`variance` must be 4 numbers"):
        bb.encode_box_to_deltas(a, a, "xyxy", "xyxy", variance=[1.0, 1.0])
    with pytest.raises(ValueError, match="`encoding_format` must be one of .* received encoding_format='xyxy'"):
        bb.encode_box_to_deltas(a, a, "xyxy", "xyxy", encoding_format="xyxy")
    with pytest.raises(ValueError, match="`encoded_format` must be one of"):
        bb.decode_deltas_to_boxes(a, a, "xyxy", "xyxy", encoded_format="yxyx")
    with pytest.raises(ValueError, match="`variance` must be 4 numbers"):
        bb.decode_deltas_to_boxes(a, a, "xyxy", "xyxy", variance=[1, 2, 3])
    with pytest.raises(ValueError, match=r"`image_shape` must be \(height, width, channels\)"):
        bb.encode_box_to_deltas(a, a, "rel_xyxy", "xyxy", image_shape=(10, 10))
    with pytest.raises(ValueError, match="both be dicts"):
        bb.decode_deltas_to_boxes({1: a}, a, "xyxy", "xyxy")
    with pytest.raises(ValueError, match=r"no entry for the anchor levels \[2\]"):
        bb.decode_deltas_to_boxes({1: a, 2: a}, {1: a}, "xyxy", "xyxy")


# ---- IoU -------------------------------------------------------------------------------------------

def test_compute_iou_known_boxes():
    b1 = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b2 = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
    iou = bb.compute_iou(b1, b2, "xyxy")
    assert iou.shape == (2, 3)
    close(iou, [[25 / 175, 1, 0], [0, 0, 0]], 1e-5)
    # the same boxes in another format, batched on either side
    xywh = _np(bb.convert_format(b2, "xyxy", "xywh"))
    b1_xywh = bb.convert_format(b1, "xyxy", "xywh")
    close(bb.compute_iou(ops.expand_dims(b1_xywh, 0), b1_xywh, "xywh")[0], bb.compute_iou(b1, b1, "xyxy"))
    assert bb.compute_iou(_np(bb.convert_format(b1, "xyxy", "xywh")), np.stack([xywh] * 4), "xywh").shape == (4, 2, 3)
    rel = bb.compute_iou(b1 / 100, b2 / 100, "rel_xyxy", image_shape=(100, 100, 3))
    close(rel, iou, 1e-5)
    masked = bb.compute_iou(np.array([[0, 0, 10, 10], [-1, -1, -1, -1]], np.float32), b2, "xyxy",
                            use_masking=True, mask_val=-5)
    close(masked, [[25 / 175, 1, 0], [-5, -5, -5]], 1e-5)


def test_compute_ciou_known_boxes():
    b1 = np.array([[0, 0, 2, 2], [0, 0, 4, 2]], np.float32)
    b2 = np.array([[1, 0, 3, 2], [0, 0, 4, 2]], np.float32)
    # pair 0: IoU 2/6, centres 1 apart, enclosing box 3 x 2, same aspect ratio; pair 1: the same box
    close(bb.compute_ciou(b1, b2, "xyxy"), [1 / 3 - 1 / 13, 1.0], 1e-5)
    assert bb.compute_ciou(b1[None], b2[None], "xyxy").shape == (1, 2)
    close(bb.compute_ciou(bb.convert_format(b1, "xyxy", "yxyx"), bb.convert_format(b2, "xyxy", "yxyx"), "yxyx"),
          bb.compute_ciou(b1, b2, "xyxy"))
    # a different aspect ratio lowers it below the IoU less the centre term
    tall = np.array([[0, 0, 2, 6]], np.float32)
    assert _np(bb.compute_ciou(tall, b1[:1], "xyxy"))[0] < 2 / 6 - 4 / 40


def test_iou_errors():
    with pytest.raises(ValueError, match=r"`boxes1` must be \(N, 4\) or \(batch, N, 4\).*\(4,\)"):
        bb.compute_iou(np.zeros(4), BOX, "xyxy")
    with pytest.raises(ValueError, match="`boxes2` must be"):
        bb.compute_iou(BOX, np.zeros((1, 1, 1, 4)), "xyxy")
    with pytest.raises(ValueError, match="relative bounding_box_format .* needs `image_shape`"):
        bb.compute_iou(BOX, BOX, "rel_xyxy")
    with pytest.raises(ValueError, match="relative bounding_box_format .* needs `image_shape`"):
        bb.compute_ciou(BOX, BOX, "rel_xyxy")
    with pytest.raises(ValueError, match="`source` must be one of"):
        bb.compute_iou(BOX, BOX, "corners")


# ---- Keras parity on random boxes ---------------------------------------------------------------------

@pytest.mark.parametrize("source", FORMATS)
def test_convert_format_matches_keras(source):
    keras = _keras()
    boxes = _random_boxes((3, 5))
    for target in FORMATS:
        close(bb.convert_format(boxes, source, target, height=H, width=W),
              keras.utils.bounding_boxes.convert_format(boxes, source, target, height=H, width=W), 1e-5)


def test_clip_crop_pad_match_keras():
    kb = _keras().utils.bounding_boxes
    boxes = _random_boxes((3, 5), -20, 40)
    labels = RNG.integers(0, 5, (3, 5)).astype(np.int32)
    ours = bb.clip_to_image_size({"boxes": boxes, "labels": labels}, 30, 40)
    theirs = kb.clip_to_image_size({"boxes": boxes, "labels": labels}, 30, 40)
    close(ours["boxes"], theirs["boxes"])
    np.testing.assert_array_equal(_np(ours["labels"]), np.asarray(theirs["labels"]))
    assert (_np(ours["labels"]) == -1).any()
    rel = boxes / 50
    ours = bb.clip_to_image_size({"boxes": rel, "labels": labels}, bounding_box_format="rel_xyxy")
    theirs = kb.clip_to_image_size({"boxes": rel, "labels": labels}, bounding_box_format="rel_xyxy")
    close(ours["boxes"], theirs["boxes"])
    np.testing.assert_array_equal(_np(ours["labels"]), np.asarray(theirs["labels"]))
    close(bb.crop(boxes, 10, 5, 30, 40), kb.crop(boxes, 10, 5, 30, 40))
    close(bb.pad(boxes, 10, 5), kb.pad(boxes, 10, 5))


@pytest.mark.parametrize("center", [None, (0.3, 0.7)])
def test_affine_transform_matches_keras(center):
    keras = _keras()
    boxes = _random_boxes((3, 5))
    params = [RNG.uniform(-30, 30, 3), RNG.uniform(-0.2, 0.2, 3), RNG.uniform(-0.2, 0.2, 3), RNG.uniform(0.8, 1.2, 3),
              RNG.uniform(-10, 10, 3), RNG.uniform(-10, 10, 3)]
    params = [p.astype(np.float32) for p in params]
    cx, cy = center or (None, None)
    ours = bb.affine_transform(boxes, *params, H, W, center_x=cx, center_y=cy)
    theirs = keras.utils.bounding_boxes.affine_transform(
        keras.ops.convert_to_tensor(boxes), *[keras.ops.convert_to_tensor(p) for p in params], H, W, center_x=cx,
        center_y=cy)
    close(ours, theirs, 1e-4)


@pytest.mark.parametrize("fmt", ["center_yxhw", "center_xywh"])
@pytest.mark.parametrize("variance", [None, [0.1, 0.1, 0.2, 0.2]])
def test_deltas_match_keras(fmt, variance):
    kb = _keras().utils.bounding_boxes
    anchors, boxes = _random_boxes((5,)), _random_boxes((3, 5))
    ours = bb.encode_box_to_deltas(anchors, boxes, "xyxy", "xywh", fmt, variance)
    theirs = kb.encode_box_to_deltas(anchors, boxes, "xyxy", "xywh", fmt, variance)
    close(ours, theirs, 1e-5)
    deltas = RNG.normal(0, 0.5, (3, 5, 4)).astype(np.float32)
    close(bb.decode_deltas_to_boxes(anchors, deltas, "xyxy", "center_xywh", fmt, variance),
          kb.decode_deltas_to_boxes(anchors, deltas, "xyxy", "center_xywh", fmt, variance), 1e-4)
    close(bb.decode_deltas_to_boxes(anchors / 100, deltas, "rel_xyxy", "rel_yxyx", fmt, variance, (H, W, 3)),
          kb.decode_deltas_to_boxes(anchors / 100, deltas, "rel_xyxy", "rel_yxyx", fmt, variance, (H, W, 3)), 1e-4)


@pytest.mark.parametrize("ranks", [(2, 2), (3, 2), (2, 3), (3, 3)])
@pytest.mark.parametrize("fmt", ["xyxy", "center_xywh", "rel_yxyx"])
def test_compute_iou_matches_keras(ranks, fmt):
    kb = _keras().utils.bounding_boxes
    b1 = _random_boxes((2, 4) if ranks[0] == 3 else (4,))
    b2 = _random_boxes((2, 6) if ranks[1] == 3 else (6,))
    b1[..., 1, :] = -1          # a padding box on each side
    b2[..., 2, :] = -1
    image_shape = (100, 100, 3) if fmt.startswith("rel") else None
    if fmt.startswith("rel"):
        b1, b2 = b1 / 100, b2 / 100
    theirs = np.asarray(kb.compute_iou(b1, b2, fmt, image_shape=image_shape))
    close(bb.compute_iou(b1, b2, fmt, image_shape=image_shape), theirs, 1e-5)
    masked = bb.compute_iou(b1, b2, fmt, use_masking=True, mask_val=-2, image_shape=image_shape)
    if ranks[0] == ranks[1]:
        theirs = kb.compute_iou(b1, b2, fmt, use_masking=True, mask_val=-2, image_shape=image_shape)
    else:   # Keras's masking transposes boxes2's mask by boxes1's rank and fails; the mask by hand
        theirs = theirs.copy()
        theirs[..., 1, :] = -2
        theirs[..., 2] = -2
    close(masked, theirs, 1e-5)


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "center_yxhw"])
def test_compute_ciou_matches_keras(fmt):
    kb = _keras().utils.bounding_boxes
    b1, b2 = _random_boxes((3, 5)), _random_boxes((3, 5))
    close(bb.compute_ciou(b1, b2, fmt), kb.compute_ciou(b1, b2, fmt), 1e-5)


# ---- MaxNumBoundingBoxes ------------------------------------------------------------------------------

IMAGES = RNG.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
BOXES = _random_boxes((2, 5))
LABELS = RNG.integers(0, 4, (2, 5)).astype(np.int32)


def _data(images=IMAGES, boxes=BOXES, labels=LABELS, **extra):
    return {"images": images, "bounding_boxes": {"boxes": boxes, "labels": labels}, **extra}


def test_max_num_bounding_boxes_pads_and_truncates():
    out = layers.MaxNumBoundingBoxes(7, fill_value=-2)(_data())
    boxes, labels = _np(out["bounding_boxes"]["boxes"]), _np(out["bounding_boxes"]["labels"])
    assert boxes.shape == (2, 7, 4) and labels.shape == (2, 7)
    np.testing.assert_array_equal(boxes[:, :5], BOXES)
    np.testing.assert_array_equal(boxes[:, 5:], -2)
    np.testing.assert_array_equal(labels, np.concatenate([LABELS, np.full((2, 2), -2)], 1))
    assert out["bounding_boxes"]["labels"].dtype == "int32" and out["bounding_boxes"]["boxes"].dtype == "float32"
    np.testing.assert_array_equal(_np(out["images"]), IMAGES)

    classes = np.array([[0, 1], [1, 0]], np.float32)
    out = layers.MaxNumBoundingBoxes(3)({**_data(), "labels": classes})
    np.testing.assert_array_equal(_np(out["bounding_boxes"]["boxes"]), BOXES[:, :3])
    np.testing.assert_array_equal(_np(out["bounding_boxes"]["labels"]), LABELS[:, :3])
    np.testing.assert_array_equal(_np(out["labels"]), classes)            # other entries pass unchanged
    same = layers.MaxNumBoundingBoxes(5)(_data())
    np.testing.assert_array_equal(_np(same["bounding_boxes"]["boxes"]), BOXES)


def test_max_num_bounding_boxes_single_image_and_images_only():
    data = _data(IMAGES[0], BOXES[0].astype(np.int32), LABELS[0])
    out = layers.MaxNumBoundingBoxes(6)(data)
    assert out["bounding_boxes"]["boxes"].shape == (6, 4) and out["bounding_boxes"]["boxes"].dtype == "float32"
    np.testing.assert_array_equal(_np(out["bounding_boxes"]["labels"]), list(LABELS[0]) + [-1])
    assert data["bounding_boxes"]["boxes"].shape == (5, 4)       # the input dict is left as it was
    np.testing.assert_array_equal(_np(layers.MaxNumBoundingBoxes(2)(IMAGES)), IMAGES)
    assert layers.MaxNumBoundingBoxes(2)({"images": IMAGES})["images"].shape == IMAGES.shape


def test_max_num_bounding_boxes_config_and_shape():
    layer = layers.MaxNumBoundingBoxes(4, fill_value=0, name="mnb")
    config = layer.get_config()
    assert config["max_number"] == 4 and config["fill_value"] == 0 and config["name"] == "mnb"
    again = layers.MaxNumBoundingBoxes.from_config(config)
    assert again.get_config() == config
    restored = layers.deserialize(layers.serialize(layer))
    assert type(restored) is layers.MaxNumBoundingBoxes and restored.get_config() == config
    shape = layer.compute_output_shape({"images": (None, 8, 8, 3),
                                        "bounding_boxes": {"boxes": (None, 9, 4), "labels": (None, 9)}})
    assert shape["bounding_boxes"] == {"boxes": (None, 4, 4), "labels": (None, 4)}
    assert shape["images"] == (None, 8, 8, 3)


def test_max_num_bounding_boxes_in_a_functional_model():
    images = lamina.Input((8, 8, 3))
    boxes, labels = lamina.Input((5, 4), dtype="int32"), lamina.Input((5,), dtype="int32")
    out = layers.MaxNumBoundingBoxes(7)({"images": images, "bounding_boxes": {"boxes": boxes, "labels": labels}})
    assert out["bounding_boxes"]["boxes"].shape == (None, 7, 4) and out["bounding_boxes"]["boxes"].dtype == "float32"
    assert out["bounding_boxes"]["labels"].shape == (None, 7) and out["bounding_boxes"]["labels"].dtype == "int32"
    model = lamina.Model([images, boxes, labels], [out["bounding_boxes"]["boxes"], out["bounding_boxes"]["labels"]])
    got_boxes, got_labels = model([IMAGES, BOXES.astype(np.int32), LABELS])
    np.testing.assert_array_equal(_np(got_boxes)[:, :5], BOXES.astype(np.int32))
    np.testing.assert_array_equal(_np(got_labels)[:, 5:], -1)


def test_max_num_bounding_boxes_errors():
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="`max_number` must be a positive integer"):
            layers.MaxNumBoundingBoxes(bad)
    with pytest.raises(ValueError, match="`fill_value` must be an integer"):
        layers.MaxNumBoundingBoxes(3, fill_value=0.5)
    with pytest.raises(ValueError, match="`fill_value` must be a finite number"):
        layers.MaxNumBoundingBoxes(3, fill_value="x")
    layer = layers.MaxNumBoundingBoxes(3)
    with pytest.raises(ValueError, match="dict with the keys 'boxes' and 'labels'"):
        layer({"images": IMAGES, "bounding_boxes": {"boxes": BOXES}})
    with pytest.raises(ValueError, match=r"boxes'\] of shape \(batch, num_boxes, 4\), received shape \(5, 4\)"):
        layer(_data(boxes=BOXES[0], labels=LABELS[0]))
    with pytest.raises(ValueError, match=r"labels'\] must have the shape \(2, 5\)"):
        layer(_data(labels=LABELS[:, :, None]))
    with pytest.raises(ValueError, match="rank 3 .* or 4"):
        layer(_data(images=IMAGES[0, 0]))


@pytest.mark.parametrize("max_number", [3, 5, 8])
def test_max_num_bounding_boxes_matches_keras(max_number):
    keras = _keras()
    ours = layers.MaxNumBoundingBoxes(max_number, fill_value=-3)
    theirs = keras.layers.MaxNumBoundingBoxes(max_number, fill_value=-3, bounding_box_format="xyxy")
    for data in (_data(), _data(IMAGES[1], BOXES[1], LABELS[1])):
        a = ours({k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()})
        b = theirs({k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()})
        for key in ("boxes", "labels"):
            np.testing.assert_array_equal(_np(a["bounding_boxes"][key]), np.asarray(b["bounding_boxes"][key]))
        np.testing.assert_array_equal(_np(a["images"]), np.asarray(b["images"]))
    # a Keras config loads (Keras keeps `bounding_box_format` and drops `fill_value`)
    loaded = layers.MaxNumBoundingBoxes.from_config(theirs.get_config())
    assert loaded.max_number == max_number and loaded.bounding_box_format == "xyxy"


def test_keras_coverage_counts_bounding_boxes():
    keras = _keras()
    from test_keras_coverage import coverage
    covered, missing, other = coverage(keras)["utils"]
    assert "bounding_boxes" in covered
    covered, missing, other = coverage(keras)["layers"]
    assert "MaxNumBoundingBoxes" in covered
    assert lamina.layers.MaxNumBoundingBoxes is layers.MaxNumBoundingBoxes
    assert ops is lamina.ops

"""Bounding-box utilities, as Keras 3's `keras.utils.bounding_boxes` (lamina.utils.bounding_boxes):
format conversion (`convert_format`), `clip_to_image_size`, `affine_transform`, `crop`, `pad`,
anchor deltas (`encode_box_to_deltas` / `decode_deltas_to_boxes`) and overlaps (`compute_iou`,
pairwise, and `compute_ciou`, element-wise).

Boxes are tensors (or arrays) whose last axis holds 4 numbers, one box per row: `(N, 4)` or
`(batch, N, 4)`. The formats (case-insensitive in `convert_format`), Keras's:
  "xyxy"        [left, top, right, bottom]        "yxyx"        [top, left, bottom, right]
  "xywh"        [left, top, width, height]        "center_xywh" [center_x, center_y, width, height]
  "center_yxhw" [center_y, center_x, height, width]
  "rel_xyxy", "rel_yxyx", "rel_xywh", "rel_center_xywh": the same, divided by the image's width
  (x values) and height (y values); converting to or from them needs `height` and `width`.
Where Keras takes a dict {"boxes", "labels"} (`convert_format`, `clip_to_image_size`), so do these;
they return a new dict (Keras's `convert_format` writes into the one it is given).

All the arithmetic is lamina.ops's, so the results are lamina tensors (on the boxes' device)."""
import math

from . import ops
from .backend import epsilon
from .backend.tensor import Tensor

SUPPORTED_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw", "rel_xyxy", "rel_yxyx", "rel_xywh",
                     "rel_center_xywh")
_ENCODINGS = ("center_xywh", "center_yxhw")

__all__ = ["affine_transform", "clip_to_image_size", "compute_ciou", "compute_iou", "convert_format", "crop",
           "decode_deltas_to_boxes", "encode_box_to_deltas", "pad"]


# ---- helpers ---------------------------------------------------------------------------------------

def _tensor(x):
    return x if isinstance(x, Tensor) else ops.convert_to_tensor(x)


def _boxes(who, boxes, name="boxes"):
    """`boxes` as a tensor whose last axis has 4 numbers."""
    try:
        boxes = _tensor(boxes)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}: `{name}` must be a tensor or array of boxes, shape (..., 4); "
                         f"cannot use {type(boxes).__name__}: {e}") from None
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"{who}: `{name}` must have a last axis of 4 (one box per row: (N, 4) or (batch, N, 4)), "
                         f"received {name}.shape={tuple(boxes.shape)}")
    return boxes


def _box_dict(who, bounding_boxes):
    if not isinstance(bounding_boxes, dict) or "boxes" not in bounding_boxes:
        raise ValueError(f"{who}: `bounding_boxes` must be a dict with a 'boxes' entry (and optionally 'labels'), "
                         f"received {type(bounding_boxes).__name__}"
                         + (f" with keys {sorted(bounding_boxes)}" if isinstance(bounding_boxes, dict) else ""))
    return bounding_boxes


def _xyxy_only(who, bounding_box_format, allowed=("xyxy",)):
    if bounding_box_format not in allowed:
        raise NotImplementedError(f"{who}: only bounding_box_format in {allowed} is implemented (as in Keras), "
                                  f"received bounding_box_format={bounding_box_format!r}; convert the boxes first "
                                  f"with convert_format")


def _image_hw(who, image_shape):
    """(height, width) of an `image_shape` (height, width, channels), or (None, None)."""
    if image_shape is None:
        return None, None
    try:
        height, width, _ = image_shape
    except (TypeError, ValueError):
        raise ValueError(f"{who}: `image_shape` must be (height, width, channels), received "
                         f"image_shape={image_shape!r}") from None
    return height, width


def _variance(who, variance):
    if variance is None:
        return None
    variance = ops.convert_to_tensor(variance, "float32")
    if variance.ndim == 0 or variance.shape[-1] != 4:
        raise ValueError(f"{who}: `variance` must be 4 numbers (one per box coordinate), received "
                         f"variance={variance}")
    return variance


def _split(boxes):
    return ops.split(boxes, 4, axis=-1)


def _join(*columns):
    return ops.concatenate(list(columns), axis=-1)


# ---- format conversion -----------------------------------------------------------------------------
# each format to and from xyxy; a relative format scales x by `width` and y by `height`

def _to_xyxy(fmt, boxes, height, width):
    a, b, c, d = _split(boxes)
    if fmt == "xyxy":
        return boxes
    if fmt == "yxyx":
        return _join(b, a, d, c)
    if fmt == "xywh":
        return _join(a, b, a + c, b + d)
    if fmt in ("center_xywh", "center_yxhw"):
        cx, cy, w, h = (a, b, c, d) if fmt == "center_xywh" else (b, a, d, c)
        half_w, half_h = w / 2.0, h / 2.0
        return _join(cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    if fmt == "rel_xyxy":
        return _join(a * width, b * height, c * width, d * height)
    if fmt == "rel_yxyx":
        return _join(b * width, a * height, d * width, c * height)
    if fmt == "rel_xywh":
        return _join(a * width, b * height, (a + c) * width, (b + d) * height)
    # rel_center_xywh
    half_w, half_h = c / 2.0, d / 2.0
    return _join((a - half_w) * width, (b - half_h) * height, (a + half_w) * width, (b + half_h) * height)


def _from_xyxy(fmt, boxes, height, width):
    x1, y1, x2, y2 = _split(boxes)
    if fmt == "xyxy":
        return boxes
    if fmt == "yxyx":
        return _join(y1, x1, y2, x2)
    if fmt == "xywh":
        return _join(x1, y1, x2 - x1, y2 - y1)
    if fmt in ("center_xywh", "center_yxhw"):
        w, h = x2 - x1, y2 - y1
        cx, cy = x1 + w / 2.0, y1 + h / 2.0
        return _join(cx, cy, w, h) if fmt == "center_xywh" else _join(cy, cx, h, w)
    if fmt == "rel_xyxy":
        return _join(x1 / width, y1 / height, x2 / width, y2 / height)
    if fmt == "rel_yxyx":
        return _join(y1 / height, x1 / width, y2 / height, x2 / width)
    if fmt == "rel_xywh":
        return _join(x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height)
    # rel_center_xywh
    return _join((x1 + (x2 - x1) / 2.0) / width, (y1 + (y2 - y1) / 2.0) / height, (x2 - x1) / width,
                 (y2 - y1) / height)


def convert_format(boxes, source, target, height=None, width=None, dtype="float32"):
    """Boxes converted from the `source` format to the `target` one (see the module's list of
    formats; case-insensitive), as `dtype`. `height` and `width` (the image's) are needed when
    either format is relative. `boxes` may be a dict {"boxes", "labels", ...}: a new dict comes
    back, its "boxes" converted and the rest as it was.

    >>> convert_format(np.array([[10, 20, 30, 40]]), "xyxy", "xywh")   # [[10., 20., 20., 20.]]
    """
    who = "convert_format"
    if isinstance(boxes, dict):
        out = dict(_box_dict(who, boxes))
        out["boxes"] = convert_format(boxes["boxes"], source, target, height=height, width=width, dtype=dtype)
        return out
    boxes = _boxes(who, boxes)
    formats = {}
    for name, fmt in (("source", source), ("target", target)):
        if not isinstance(fmt, str) or fmt.lower() not in SUPPORTED_FORMATS:
            raise ValueError(f"{who}: `{name}` must be one of {SUPPORTED_FORMATS} (case-insensitive), "
                             f"received {name}={fmt!r}")
        formats[name] = fmt.lower()
    source, target = formats["source"], formats["target"]
    if (source.startswith("rel_") or target.startswith("rel_")) and (height is None or width is None):
        raise ValueError(f"{who}: converting between relative and absolute formats needs the image's `height` and "
                         f"`width`; received source={source!r}, target={target!r}, height={height}, width={width}")
    boxes = ops.cast(boxes, dtype)
    if source == target:
        return boxes
    if height is not None:
        height = ops.cast(height, dtype)
    if width is not None:
        width = ops.cast(width, dtype)
    if source.startswith("rel_") and target.startswith("rel_"):   # relative to relative: no pixels involved
        source, target = source[4:], target[4:]
    return _from_xyxy(target, _to_xyxy(source, boxes, height, width), height, width)


# ---- geometry --------------------------------------------------------------------------------------

def clip_to_image_size(bounding_boxes, height=None, width=None, bounding_box_format="xyxy"):
    """Boxes clipped to the image: a new dict {"boxes", "labels", ...} whose boxes lie inside
    [0, width] x [0, height] ("xyxy", needs `height` and `width`) or [0, 1] x [0, 1]
    ("rel_xyxy"); a box left with no area gets the label -1. Other formats raise
    NotImplementedError, as in Keras."""
    who = "clip_to_image_size"
    _box_dict(who, bounding_boxes)
    _xyxy_only(who, bounding_box_format, ("xyxy", "rel_xyxy"))
    if bounding_box_format == "xyxy" and (height is None or width is None):
        raise ValueError(f"{who}: `height` and `width` must be given for bounding_box_format='xyxy', received "
                         f"height={height}, width={width}")
    boxes = _boxes(who, bounding_boxes["boxes"], "bounding_boxes['boxes']")
    labels = bounding_boxes.get("labels")
    if bounding_box_format == "xyxy":
        high_x, high_y = ops.cast(width, boxes.dtype), ops.cast(height, boxes.dtype)
        low = 0
    else:
        high_x = high_y = 1.0
        low = 0.0
    x1, y1, x2, y2 = _split(boxes)
    boxes = _join(ops.clip(x1, low, high_x), ops.clip(y1, low, high_y), ops.clip(x2, low, high_x),
                  ops.clip(y2, low, high_y))
    result = dict(bounding_boxes)
    result["boxes"] = boxes
    if labels is not None:
        labels = _tensor(labels)
        x1, y1, x2, y2 = _split(boxes)
        area = ops.squeeze((x2 - x1) * (y2 - y1), axis=-1)
        result["labels"] = ops.where(area > 0, labels, ops.full((), -1, labels.dtype))
    return result


def _inverse_affine_coefficients(center_x, center_y, angle, translate_x, translate_y, scale, shear_x, shear_y,
                                 height, width):
    """The rows (a0, a1, a2), (b0, b1, b2) of the map from input to output pixel positions of the
    affine image transform with these parameters (Keras's `_compute_inverse_affine_matrix`, after
    TensorFlow's `_get_inverse_affine_matrix`), each a (batch,) tensor."""
    to_rad = math.pi / 180.0
    angle, shear_x, shear_y = -angle, -shear_x, -shear_y
    cx = center_x * (width - 1)
    cy = center_y * (height - 1)
    rot = angle * to_rad
    tx = -translate_x * (width - 1)
    ty = -translate_y * (height - 1)
    sx = shear_x * to_rad
    sy = shear_y * to_rad
    cos_sy = ops.cos(sy)
    tan_sx = ops.tan(sx)
    rot_minus_sy = rot - sy
    cx_plus_tx = cx + tx
    cy_plus_ty = cy + ty
    # rotation and shear without the scale; det([[a, b], [c, d]]) == 1
    a = ops.cos(rot_minus_sy) / cos_sy
    b = a * tan_sx + ops.sin(rot)
    c = -ops.sin(rot_minus_sy) / cos_sy
    d = ops.cos(rot) - c * tan_sx
    a0, a1 = d * scale, -b * scale
    b0, b1 = -c * scale, a * scale
    a2 = cx - a0 * cx_plus_tx - a1 * cy_plus_ty
    b2 = cy - b0 * cx_plus_tx - b1 * cy_plus_ty
    return (a0, a1, a2), (b0, b1, b2)


def affine_transform(boxes, angle, translate_x, translate_y, scale, shear_x, shear_y, height, width, center_x=None,
                     center_y=None, bounding_box_format="xyxy"):
    """Boxes moved by the affine image transform Keras's RandomAffine-style layers apply: rotation
    by `angle` degrees, translation by `translate_x` / `translate_y` (fractions of the image),
    `scale`, shears `shear_x` / `shear_y` (degrees), about (`center_x`, `center_y`) (fractions,
    default 0.5) of an image of `height` x `width`. Each box becomes the smallest upright box
    holding its four transformed corners.

    boxes: (batch, N, 4) "xyxy" boxes (a single (N, 4) set is taken as a batch of one); the
    parameters are (batch,) tensors (or numbers, the same for every image). The result has the
    parameters' float dtype (float32 for numbers) and the boxes' shape."""
    who = "affine_transform"
    _xyxy_only(who, bounding_box_format)
    boxes = _boxes(who, boxes)
    single = boxes.ndim == 2
    if single:
        boxes = ops.expand_dims(boxes, 0)
    if boxes.ndim != 3:
        raise ValueError(f"{who}: `boxes` must be (N, 4) or (batch, N, 4), received boxes.shape="
                         f"{tuple(boxes.shape)}")
    angle = _tensor(angle)
    if angle.dtype not in ("float32", "bfloat16"):
        angle = ops.cast(angle, "float32")
    dtype = angle.dtype

    def per_image(name, value):
        value = ops.cast(_tensor(value), dtype)
        if value.ndim > 1 or (value.ndim == 1 and value.shape[0] not in (1, boxes.shape[0])):
            raise ValueError(f"{who}: `{name}` must be a number or one value per image (batch of "
                             f"{boxes.shape[0]}), received {name} of shape {tuple(value.shape)}")
        return ops.reshape(value, (-1, 1, 1))   # against (batch, N, corners)

    params = {"angle": angle, "translate_x": translate_x, "translate_y": translate_y, "scale": scale,
              "shear_x": shear_x, "shear_y": shear_y, "center_x": 0.5 if center_x is None else center_x,
              "center_y": 0.5 if center_y is None else center_y}
    p = {name: per_image(name, v) for name, v in params.items()}
    (a0, a1, a2), (b0, b1, b2) = _inverse_affine_coefficients(
        p["center_x"], p["center_y"], p["angle"], p["translate_x"], p["translate_y"], p["scale"], p["shear_x"],
        p["shear_y"], ops.cast(height, dtype), ops.cast(width, dtype))
    x1, y1, x2, y2 = (ops.squeeze(t, -1) for t in _split(ops.cast(boxes, dtype)))
    xs = ops.stack([x1, x2, x2, x1], axis=-1)     # the corners: (batch, N, 4)
    ys = ops.stack([y1, y1, y2, y2], axis=-1)
    new_x = xs * a0 + ys * a1 + a2
    new_y = xs * b0 + ys * b1 + b2
    out = ops.stack([ops.amin(new_x, axis=-1), ops.amin(new_y, axis=-1), ops.amax(new_x, axis=-1),
                     ops.amax(new_y, axis=-1)], axis=-1)
    return ops.squeeze(out, 0) if single else out


def _clip_or_not(x, low, high):
    return ops.maximum(x, low) if high is None else ops.clip(x, low, high)


def crop(boxes, top, left, height, width, bounding_box_format="xyxy"):
    """Boxes in the coordinates of the image's crop at (`top`, `left`) of size `height` x
    `width`: shifted by (-left, -top) and clipped to [0, width] x [0, height] (a `None` size
    leaves that side unclipped). "xyxy" boxes only, as in Keras."""
    who = "crop"
    _xyxy_only(who, bounding_box_format)
    x1, y1, x2, y2 = _split(_boxes(who, boxes))
    return _join(_clip_or_not(x1 - left, 0, width), _clip_or_not(y1 - top, 0, height),
                 _clip_or_not(x2 - left, 0, width), _clip_or_not(y2 - top, 0, height))


def pad(boxes, top, left, height=None, width=None, bounding_box_format="xyxy"):
    """Boxes in the coordinates of the image padded with `top` rows above and `left` columns on
    the left: shifted by (left, top). `height` and `width` are not used (Keras's signature).
    "xyxy" boxes only, as in Keras."""
    who = "pad"
    _xyxy_only(who, bounding_box_format)
    x1, y1, x2, y2 = _split(_boxes(who, boxes))
    return _join(x1 + left, y1 + top, x2 + left, y2 + top)


# ---- anchors ---------------------------------------------------------------------------------------

def encode_box_to_deltas(anchors, boxes, anchor_format, box_format, encoding_format="center_yxhw", variance=None,
                         image_shape=None):
    """The deltas that turn `anchors` ((N, 4)) into `boxes` ((N, 4) or (batch, N, 4)), both
    taken to `encoding_format` ("center_yxhw" or "center_xywh"): the centre offset over the
    anchor's size, then log(box size / anchor size) (sizes at least backend.epsilon()), divided
    by `variance` (4 numbers) when given. `image_shape` (height, width, channels) is needed for
    relative formats."""
    who = "encode_box_to_deltas"
    variance = _variance(who, variance)
    if encoding_format not in _ENCODINGS:
        raise ValueError(f"{who}: `encoding_format` must be one of {_ENCODINGS}, received "
                         f"encoding_format={encoding_format!r}")
    height, width = _image_hw(who, image_shape)
    anchors = convert_format(anchors, anchor_format, encoding_format, height=height, width=width)
    boxes = convert_format(boxes, box_format, encoding_format, height=height, width=width)
    eps = epsilon()
    anchor_size = ops.maximum(anchors[..., 2:], eps)
    box_size = ops.maximum(boxes[..., 2:], eps)
    deltas = _join((boxes[..., :2] - anchors[..., :2]) / anchor_size, ops.log(box_size / anchor_size))
    return deltas if variance is None else deltas / variance


def decode_deltas_to_boxes(anchors, boxes_delta, anchor_format, box_format, encoded_format="center_yxhw",
                           variance=None, image_shape=None):
    """The boxes, in `box_format`, that `boxes_delta` ((N, 4) or (batch, N, 4), in
    `encoded_format`) make of `anchors` ((N, 4)): the inverse of encode_box_to_deltas.
    `anchors` and `boxes_delta` may both be dicts {level: tensor} (a feature pyramid): a dict of
    boxes per level comes back."""
    who = "decode_deltas_to_boxes"
    variance = _variance(who, variance)
    if encoded_format not in _ENCODINGS:
        raise ValueError(f"{who}: `encoded_format` must be one of {_ENCODINGS}, received "
                         f"encoded_format={encoded_format!r}")
    height, width = _image_hw(who, image_shape)

    def decode(anchor, delta):
        anchor = convert_format(anchor, anchor_format, encoded_format, height=height, width=width)
        delta = _boxes(who, delta, "boxes_delta")
        if variance is not None:
            delta = delta * variance
        box = _join(delta[..., :2] * anchor[..., 2:] + anchor[..., :2], ops.exp(delta[..., 2:]) * anchor[..., 2:])
        return convert_format(box, encoded_format, box_format, height=height, width=width)

    if isinstance(anchors, dict) or isinstance(boxes_delta, dict):
        if not (isinstance(anchors, dict) and isinstance(boxes_delta, dict)):
            raise ValueError(f"{who}: `anchors` and `boxes_delta` must both be dicts (one entry per level) or both "
                             f"tensors, received {type(anchors).__name__} and {type(boxes_delta).__name__}")
        missing = [lvl for lvl in anchors if lvl not in boxes_delta]
        if missing:
            raise ValueError(f"{who}: `boxes_delta` has no entry for the anchor levels {missing}")
        return {lvl: decode(anchor, boxes_delta[lvl]) for lvl, anchor in anchors.items()}
    return decode(anchors, boxes_delta)


# ---- overlaps --------------------------------------------------------------------------------------

def compute_iou(boxes1, boxes2, bounding_box_format, use_masking=False, mask_val=-1, image_shape=None):
    """Pairwise intersection over union: (M, N) for boxes1 (M, 4) and boxes2 (N, 4), and
    (batch, M, N) when either is batched (batch, ., 4). `use_masking` puts `mask_val` in the
    pairs where either box has all four values negative (padding). Relative formats need
    `image_shape` (height, width, channels)."""
    who = "compute_iou"
    boxes1, boxes2 = _boxes(who, boxes1, "boxes1"), _boxes(who, boxes2, "boxes2")
    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)):
        if b.ndim not in (2, 3):
            raise ValueError(f"{who}: `{name}` must be (N, 4) or (batch, N, 4), received {name}.shape="
                             f"{tuple(b.shape)}")
    if isinstance(bounding_box_format, str) and "rel" in bounding_box_format and image_shape is None:
        raise ValueError(f"{who}: a relative bounding_box_format ({bounding_box_format!r}) needs `image_shape` "
                         f"(height, width, channels), received image_shape=None")
    height, width = _image_hw(who, image_shape)
    boxes1 = convert_format(boxes1, bounding_box_format, "yxyx", height=height, width=width)
    boxes2 = convert_format(boxes2, bounding_box_format, "yxyx", height=height, width=width)

    def across(t):     # boxes2's (..., N, 1) columns as (..., 1, N) rows
        return ops.swapaxes(t, -1, -2)

    y_min1, x_min1, y_max1, x_max1 = _split(boxes1)          # (..., M, 1)
    y_min2, x_min2, y_max2, x_max2 = (across(t) for t in _split(boxes2))   # (..., 1, N)
    inter_h = ops.maximum(ops.minimum(y_max1, y_max2) - ops.maximum(y_min1, y_min2), 0.0)
    inter_w = ops.maximum(ops.minimum(x_max1, x_max2) - ops.maximum(x_min1, x_min2), 0.0)
    intersection = inter_h * inter_w
    area1 = (y_max1 - y_min1) * (x_max1 - x_min1)
    area2 = (y_max2 - y_min2) * (x_max2 - x_min2)
    iou = intersection / (area1 + area2 - intersection + epsilon())
    if not use_masking:
        return iou
    pad1 = ops.less(ops.max(boxes1, axis=-1, keepdims=True), 0.0)
    pad2 = across(ops.less(ops.max(boxes2, axis=-1, keepdims=True), 0.0))
    return ops.where(ops.logical_or(pad1, pad2), ops.full((), float(mask_val), iou.dtype), iou)


def compute_ciou(boxes1, boxes2, bounding_box_format, image_shape=None):
    """Complete IoU of boxes1 and boxes2, box by box (their shapes (..., 4) broadcast; the result
    drops the last axis): IoU less the squared distance of the centres over the squared diagonal
    of the enclosing box, less the aspect-ratio term v * alpha. Relative formats need
    `image_shape` (height, width, channels)."""
    who = "compute_ciou"
    if isinstance(bounding_box_format, str) and "rel" in bounding_box_format and image_shape is None:
        raise ValueError(f"{who}: a relative bounding_box_format ({bounding_box_format!r}) needs `image_shape` "
                         f"(height, width, channels), received image_shape=None")
    height, width = _image_hw(who, image_shape)
    boxes1 = convert_format(_boxes(who, boxes1, "boxes1"), bounding_box_format, "xyxy", height=height, width=width)
    boxes2 = convert_format(_boxes(who, boxes2, "boxes2"), bounding_box_format, "xyxy", height=height, width=width)
    eps = epsilon()
    x_min1, y_min1, x_max1, y_max1 = _split(boxes1)
    x_min2, y_min2, x_max2, y_max2 = _split(boxes2)
    width_1, height_1 = x_max1 - x_min1, y_max1 - y_min1 + eps
    width_2, height_2 = x_max2 - x_min2, y_max2 - y_min2 + eps
    intersection = (ops.maximum(ops.minimum(x_max1, x_max2) - ops.maximum(x_min1, x_min2), 0.0)
                    * ops.maximum(ops.minimum(y_max1, y_max2) - ops.maximum(y_min1, y_min2), 0.0))
    union = width_1 * height_1 + width_2 * height_2 - intersection + eps
    iou = ops.squeeze(intersection / (union + eps), axis=-1)
    convex_w = ops.maximum(x_max1, x_max2) - ops.minimum(x_min1, x_min2)
    convex_h = ops.maximum(y_max1, y_max2) - ops.minimum(y_min1, y_min2)
    diagonal2 = ops.squeeze(convex_w ** 2 + convex_h ** 2 + eps, axis=-1)
    centres2 = ops.squeeze(((x_min1 + x_max1) / 2 - (x_min2 + x_max2) / 2) ** 2
                           + ((y_min1 + y_max1) / 2 - (y_min2 + y_max2) / 2) ** 2, axis=-1)
    v = ops.squeeze((4 / math.pi ** 2) * (ops.arctan(width_2 / height_2) - ops.arctan(width_1 / height_1)) ** 2,
                    axis=-1)
    alpha = v / (v - iou + (1 + eps))
    return iou - (centres2 / diagonal2 + v * alpha)

"""Keras 3's dict inputs for the image preprocessing layers: a layer called on
{"images": ..., "labels": ..., "bounding_boxes": {"boxes": ..., "labels": ...},
"segmentation_masks": ...} applies one random draw to every entry, as Keras's
BaseImagePreprocessingLayer does:

- images: the layer's transformation (rank 4, a batch, or rank 3, one image);
- bounding_boxes: boxes in the layer's `bounding_box_format` ("xyxy", "rel_xyxy", "xywh",
  "center_xywh", "yxyx", ...; lamina.utils.bounding_boxes), (batch, N, 4) with labels (batch, N)
  (one image: (N, 4) and (N,)); a geometric layer moves them with the image, clips them to it
  and gives a box left with no area the label -1; the others pass them unchanged. A batch may
  also come as a list of per-image box lists or arrays of different lengths: it is padded, as
  Keras's densify_bounding_boxes pads, with boxes of zeros labelled -1. The boxes come back as
  float32 tensors;
- segmentation_masks: through the same geometry, sampled nearest; colour layers leave them;
- labels: MixUp and CutMix mix them; the others leave them;
- any other key passes unchanged.

As in Keras, the dict given is updated and returned (so is its "bounding_boxes" dict), and
"bounding_boxes" needs the layer's `bounding_box_format`. The layers themselves say what they do
with each entry (`_dict_params`, `_transform_boxes`, `_transform_masks`, `_transform_labels` in
layers/preprocessing_image.py)."""
import numpy as np

from .. import ops
from .._bounding_boxes import SUPPORTED_FORMATS, convert_format
from ..backend import dtypes
from ..backend.tensor import Tensor


def box_format_arg(who, bounding_box_format):
    if bounding_box_format is None:
        return None
    if not isinstance(bounding_box_format, str) or bounding_box_format.lower() not in SUPPORTED_FORMATS:
        raise ValueError(f"{who}: `bounding_box_format` must be None or one of {SUPPORTED_FORMATS}, received "
                         f"bounding_box_format={bounding_box_format!r}")
    return bounding_box_format


def _who(layer):
    return f"{type(layer).__name__} '{layer.name}'"


def _is_symbolic(value):
    from .input_layer import KerasTensor
    from ..tree import flatten
    return any(isinstance(t, KerasTensor) for t in flatten(value))


def _rank(value):
    if isinstance(value, Tensor) or hasattr(value, "ndim"):
        return value.ndim
    return np.ndim(value) if not isinstance(value, (list, tuple)) or _regular(value) else None


def _regular(value):
    try:
        np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _densify(layer, bounding_boxes, batched, batch):
    """Keras's validate_bounding_boxes + densify_bounding_boxes: boxes as a float32 array or
    tensor of shape (batch, N, 4) ((N, 4) for one image), labels (batch, N) ((N,)); a batch given
    as a list of per-image lists of different lengths is padded with zero boxes labelled -1."""
    who = _who(layer)
    if not isinstance(bounding_boxes, dict) or "boxes" not in bounding_boxes or "labels" not in bounding_boxes:
        raise ValueError(f"{who}: inputs['bounding_boxes'] must be a dict with the keys 'boxes' and 'labels', "
                         f"received {type(bounding_boxes).__name__}"
                         + (f" with keys {sorted(bounding_boxes)}" if isinstance(bounding_boxes, dict) else ""))
    boxes, labels = bounding_boxes["boxes"], bounding_boxes["labels"]
    if isinstance(boxes, (list, tuple)) != isinstance(labels, (list, tuple)):
        raise ValueError(f"{who}: bounding_boxes['boxes'] and bounding_boxes['labels'] must both be lists (one entry "
                         f"per image) or both arrays/tensors, received {type(boxes).__name__} and "
                         f"{type(labels).__name__}")
    if isinstance(boxes, (list, tuple)) and batched and not (_regular(boxes) and _regular(labels)):
        if len(boxes) != len(labels):
            raise ValueError(f"{who}: bounding_boxes['boxes'] and ['labels'] must have one entry per image, received "
                             f"{len(boxes)} box lists and {len(labels)} label lists")
        per_image = []
        for i, (b, lab) in enumerate(zip(boxes, labels)):
            b = np.asarray(b, np.float32).reshape(-1, 4) if np.size(b) % 4 == 0 else np.asarray(b, np.float32)
            lab = np.asarray(lab)
            if b.ndim != 2 or b.shape[-1] != 4 or lab.shape != b.shape[:1]:
                raise ValueError(f"{who}: image {i}'s boxes must be a list of [4 numbers] with one label each, "
                                 f"received boxes of shape {np.shape(boxes[i])} and labels of shape "
                                 f"{np.shape(labels[i])}")
            per_image.append((b, lab))
        n = max((b.shape[0] for b, _ in per_image), default=0)
        label_dtype = np.result_type(*[lab.dtype for _, lab in per_image]) if per_image else np.int32
        boxes = np.zeros((len(per_image), n, 4), np.float32)
        labels = np.full((len(per_image), n), -1, label_dtype if label_dtype.kind in "iuf" else np.int32)
        for i, (b, lab) in enumerate(per_image):
            boxes[i, :b.shape[0]] = b
            labels[i, :b.shape[0]] = lab
    boxes = boxes if isinstance(boxes, Tensor) else np.asarray(boxes, np.float32)
    labels = labels if isinstance(labels, Tensor) else np.asarray(labels)
    if isinstance(labels, np.ndarray) and labels.dtype.kind not in "iuf":
        raise ValueError(f"{who}: bounding_boxes['labels'] must be numbers, received an array of dtype "
                         f"{labels.dtype}")
    shape = tuple(boxes.shape)
    want = "(batch, num_boxes, 4)" if batched else "(num_boxes, 4) (one image)"
    if len(shape) != (3 if batched else 2) or shape[-1] != 4:
        raise ValueError(f"{who}: expected bounding_boxes['boxes'] of shape {want}, as the images are "
                         f"{'a batch (rank 4)' if batched else 'one image (rank 3)'}, received shape {shape}")
    if batched and shape[0] != batch:
        raise ValueError(f"{who}: bounding_boxes['boxes'] must have one row per image ({batch} images), received "
                         f"shape {shape}")
    if tuple(labels.shape) != shape[:-1]:
        raise ValueError(f"{who}: bounding_boxes['labels'] must have the shape {shape[:-1]} (one label per box), "
                         f"received shape {tuple(labels.shape)}")
    out = dict(bounding_boxes)
    out["boxes"], out["labels"] = boxes, labels
    return out


def call_with_dict(layer, call, inputs, args, kwargs):
    """Layer.__call__ on Keras's dict input: checks it, densifies the boxes, runs the layer (whose
    `call` hands dicts to `_call_dict`) and writes the results back into `inputs`, returned."""
    who = _who(layer)
    if "images" not in inputs:
        raise ValueError(f"{who}: a dict input must have an 'images' entry (and may have 'labels', "
                         f"'bounding_boxes', 'segmentation_masks'), received keys {sorted(inputs)}")
    if _is_symbolic(inputs):
        raise NotImplementedError(f"{who}: dict inputs are taken in eager calls (tensors or arrays), not on "
                                  f"symbolic inputs (lamina.Input); call the layer on each batch of data "
                                  f"(in the input pipeline, before the model)")
    images = inputs["images"]
    rank = _rank(images)
    if rank not in (3, 4):
        raise ValueError(f"{who}: expected inputs['images'] of rank 3 (one image) or 4 (a batch), received "
                         f"shape {getattr(images, 'shape', np.shape(images) if rank is not None else 'ragged')}")
    data = dict(inputs)
    if "bounding_boxes" in inputs:
        if not layer.bounding_box_format:
            raise ValueError("You passed an input with a 'bounding_boxes' key, but you didn't specify a bounding box "
                             f"format. Pass a `bounding_box_format` argument to your {type(layer).__name__} layer, "
                             "e.g. `bounding_box_format='xyxy'`.")
        data["bounding_boxes"] = _densify(layer, inputs["bounding_boxes"], rank == 4,
                                          images.shape[0] if rank == 4 else None)
    spec, layer.input_spec = layer.input_spec, None   # the entries have different ranks: checked in call
    try:
        out = call(data, *args, **kwargs)
    finally:
        layer.input_spec = spec
    if "bounding_boxes" in out and isinstance(inputs.get("bounding_boxes"), dict):
        given = inputs["bounding_boxes"]
        given.update(out["bounding_boxes"])
        out["bounding_boxes"] = given
    inputs.update(out)
    return inputs


def transform_box_dict(layer, bounding_boxes, single, params, size):
    """A densified {"boxes", "labels"} through `layer`'s geometry: converted to "xyxy" pixels of
    the input image of `size`, moved (`layer._transform_boxes`), clipped to the output image (a
    box left with no area gets the label -1), converted back to `layer.bounding_box_format`."""
    out = dict(bounding_boxes)
    boxes = ops.convert_to_tensor(bounding_boxes["boxes"], dtypes.FLOAT32)
    labels = bounding_boxes["labels"]
    labels = labels if isinstance(labels, Tensor) else ops.convert_to_tensor(labels)
    if params is None:
        out["boxes"], out["labels"] = boxes, labels
        return out
    if single:
        boxes, labels = ops.expand_dims(boxes, 0), ops.expand_dims(labels, 0)
    fmt = layer.bounding_box_format
    h, w = size
    xyxy = convert_format(boxes, fmt, "xyxy", height=h, width=w)
    xyxy, (out_h, out_w) = layer._transform_boxes(xyxy, params, size)
    xyxy, labels = clip_boxes(xyxy, labels, out_h, out_w)
    boxes = convert_format(xyxy, "xyxy", fmt, height=out_h, width=out_w)
    if single:
        boxes, labels = ops.squeeze(boxes, 0), ops.squeeze(labels, 0)
    out["boxes"], out["labels"] = boxes, labels
    return out


def clip_boxes(xyxy, labels, height, width):
    """Keras's clip_to_image_size: "xyxy" boxes inside [0, width] x [0, height]; a box left with
    no area gets the label -1."""
    x1, y1, x2, y2 = ops.split(xyxy, 4, axis=-1)
    hx, hy = float(width), float(height)
    xyxy = ops.concatenate([ops.clip(x1, 0.0, hx), ops.clip(y1, 0.0, hy), ops.clip(x2, 0.0, hx),
                            ops.clip(y2, 0.0, hy)], axis=-1)
    x1, y1, x2, y2 = ops.split(xyxy, 4, axis=-1)
    area = ops.squeeze(ops.multiply(ops.subtract(x2, x1), ops.subtract(y2, y1)), -1)
    labels = ops.where(ops.greater(area, 0.0), labels, ops.full((), -1, labels.dtype))
    return xyxy, labels


def corners_through(xyxy, fx):
    """The smallest upright boxes holding the four corners of each box mapped by `fx`
    ((xs, ys) -> (xs', ys'), tensors (batch, N, 4))."""
    x1, y1, x2, y2 = (ops.squeeze(t, -1) for t in ops.split(xyxy, 4, axis=-1))
    xs = ops.stack([x1, x2, x2, x1], axis=-1)
    ys = ops.stack([y1, y1, y2, y2], axis=-1)
    nx, ny = fx(xs, ys)
    return ops.stack([ops.amin(nx, axis=-1), ops.amin(ny, axis=-1), ops.amax(nx, axis=-1), ops.amax(ny, axis=-1)],
                     axis=-1)


def inverse_affine_boxes(xyxy, matrix):
    """Boxes through the inverse of the (batch, 8) output-to-input maps of the affine layers
    (x_in = a0 x + a1 y + a2, y_in = b0 x + b1 y + b2): where each input box lands."""
    cols = [ops.reshape(matrix[:, i], (-1, 1, 1)) for i in range(6)]
    a0, a1, a2, b0, b1, b2 = cols
    det = ops.subtract(ops.multiply(a0, b1), ops.multiply(a1, b0))

    def fx(xs, ys):
        dx, dy = ops.subtract(xs, a2), ops.subtract(ys, b2)
        nx = ops.divide(ops.subtract(ops.multiply(b1, dx), ops.multiply(a1, dy)), det)
        ny = ops.divide(ops.subtract(ops.multiply(a0, dy), ops.multiply(b0, dx)), det)
        return nx, ny
    return corners_through(xyxy, fx)


def inverse_projective_boxes(xyxy, h8):
    """Boxes through the inverse of (batch, 8) output-to-input homographies."""
    b = h8.shape[0]
    full = ops.reshape(ops.concatenate([h8, ops.ones((b, 1))], axis=1), (b, 3, 3))
    inv = ops.inv(full)
    m = [[ops.reshape(inv[:, r, c], (-1, 1, 1)) for c in range(3)] for r in range(3)]

    def fx(xs, ys):
        def row(r):
            return ops.add(ops.add(ops.multiply(m[r][0], xs), ops.multiply(m[r][1], ys)), m[r][2])
        k = row(2)
        return ops.divide(row(0), k), ops.divide(row(1), k)
    return corners_through(xyxy, fx)

"""What the ImageNet applications share (after `keras/src/applications/imagenet_utils.py`): input
preprocessing, decoding of 1000-class predictions, input-shape rules, and finding the pretrained
weight files.

Weight files are looked up by Keras's file names, in order: `$LAMINA_DATA_DIR/pretrained/`,
Keras's own cache (`~/.keras/models/`), lamina's cache (`~/.lamina/datasets/pretrained/`), then
downloaded into lamina's cache with a progress bar and checked against the known hash.
"""
import json
import os
import warnings

import numpy as np

from .. import activations as _activations
from .._fileio import FileFormatError
from ..datasets import _files

WEIGHTS_SUBDIR = "pretrained"

# Hashes of the release files: md5s published by Keras (`file_hash=` in its applications) and
# sha256s measured on the files themselves (Keras publishes none for MobileNet and MobileNetV2);
# files absent from this table are downloaded without a hash check and verified by loading,
# layer by layer.
KNOWN_HASHES = {
    "inception_v3_weights_tf_dim_ordering_tf_kernels.h5": "9a0d58056eeedaa3f26cb7ebd46da564",
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5": "bcbd6486424b2319ff4ef7d526e38f63",
    "resnet50_weights_tf_dim_ordering_tf_kernels.h5": "2cb95161c43110f7111970584f804107",
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5": "4d473c1dd8becc155b73f8504c6f6626",
    "resnet101_weights_tf_dim_ordering_tf_kernels.h5": "f1aeb4b969a6efcfb50fad2f0c20cfc5",
    "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5": "88cf7a10940856eca736dc7b7e228a21",
    "resnet152_weights_tf_dim_ordering_tf_kernels.h5": "100835be76be38e30d865e96f2aaae62",
    "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5": "ee4c566cf9a93f14d82f913c2dc6dd0c",
    "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5": "3ef43a0b657b3be2300d5770ece849e0",
    "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5": "fac2f116257151a9d068a22e544a4917",
    "resnet101v2_weights_tf_dim_ordering_tf_kernels.h5": "6343647c601c52e1368623803854d971",
    "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5": "c0ed64b8031c3730f411d2eb4eea35b5",
    "resnet152v2_weights_tf_dim_ordering_tf_kernels.h5": "a49b44d1979771252814e80f8ec446f9",
    "resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5": "ed17cf2e0169df9d443503ef94b23b33",
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5": "64373286793e3c8b2b4e3219cbf3544b",
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5": "6d6bbae143d832006294945121d1f1fc",
    "vgg19_weights_tf_dim_ordering_tf_kernels.h5": "cbe5617147190e668d6c5d5026f83318",
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5": "253f8cb515780f3b799900260a226db6",
    "densenet121_weights_tf_dim_ordering_tf_kernels.h5": "9d60b8095a5708f2dcce2bca79d332c7",
    "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5": "30ee3e1110167f948a6b9946edeeb738",
    "densenet169_weights_tf_dim_ordering_tf_kernels.h5": "d699b8f76981ab1b30698df4c175e90b",
    "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5": "b8c4d4c20dd625c148057b9ff1c1176b",
    "densenet201_weights_tf_dim_ordering_tf_kernels.h5": "1ceb130c1ea1b78c3bf6114dbdfd8807",
    "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5": "c13680b51ded0fb44dff2d8f86ac8bb1",
    "xception_weights_tf_dim_ordering_tf_kernels.h5": "0a58e3b7378bc2990ea3b43d5981f1f6",
    "xception_weights_tf_dim_ordering_tf_kernels_notop.h5": "b0042744bf5b25fce3cb969f33bebb97",
    "mobilenet_2_5_224_tf_no_top.h5": "dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf",
    "imagenet_class_index.json": "c2c37ea517e94d9795004a39431a14cb",
}
CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
_class_index = None


def get_weights_file(fname, url):
    """Local path of the release file `fname`, fetched from `url` when it is nowhere on disk."""
    file_hash = KNOWN_HASHES.get(fname)
    keras_cached = os.path.join(os.path.expanduser("~"), ".keras", "models", fname)
    data_dir = os.environ.get("LAMINA_DATA_DIR")
    in_data_dir = data_dir and os.path.exists(os.path.join(data_dir, WEIGHTS_SUBDIR, fname))
    if not in_data_dir and os.path.exists(keras_cached):
        if file_hash:
            _files._verify(keras_cached, file_hash)
        return keras_cached
    return _files.fetch(WEIGHTS_SUBDIR, fname, url, file_hash)


def load_model_weights(model, weights, fname, url):
    """weights: "imagenet" (the release file `fname`), a path, or None (keep the random start)."""
    if weights is None:
        return model
    path = get_weights_file(fname, url) if weights == "imagenet" else os.fspath(weights)
    try:
        model.load_weights(path)
    except FileFormatError as e:
        hint = "; delete it and it is downloaded again" if weights == "imagenet" else ""
        raise FileFormatError(path, f"{e.problem} (the weights file of {model.name}){hint}") from (e.__cause__ or e)
    return model


def check_weights_arg(weights, include_top, classes):
    if not (weights in ("imagenet", None) or (isinstance(weights, (str, os.PathLike)) and os.path.exists(weights))):
        raise ValueError("The `weights` argument should be either `None` (random initialization), 'imagenet' "
                         f"(pre-training on ImageNet), or the path to a weights file that exists; received "
                         f"weights={weights!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError("If using `weights='imagenet'` with `include_top=True`, `classes` should be 1000; "
                         f"received classes={classes}")


def check_pooling(pooling):
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max', received pooling={pooling!r}")


def obtain_input_shape(input_shape, default_size, min_size, require_flatten, weights=None):
    """Keras's rule for the input shape of an application (channels_last)."""
    if weights != "imagenet" and input_shape and len(input_shape) == 3:
        if input_shape[-1] not in {1, 3}:
            warnings.warn(f"This model usually expects 1 or 3 input channels, but input_shape={input_shape} has "
                          f"{input_shape[-1]}.", stacklevel=3)
        default_shape = (default_size, default_size, input_shape[-1])
    else:
        default_shape = (default_size, default_size, 3)
    if weights == "imagenet" and require_flatten:
        if input_shape is not None and tuple(input_shape) != default_shape:
            raise ValueError(f"When setting `include_top=True` and loading `imagenet` weights, `input_shape` "
                             f"should be {default_shape}; received input_shape={input_shape}")
        return default_shape
    if input_shape:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"`input_shape` must be a tuple of three integers (height, width, channels); "
                             f"received input_shape={input_shape}")
        if input_shape[-1] != 3 and weights == "imagenet":
            raise ValueError(f"The input must have 3 channels; received input_shape={input_shape}")
        if any(d is not None and d < min_size for d in input_shape[:2]):
            raise ValueError(f"Input size must be at least {min_size}x{min_size}; received "
                             f"input_shape={input_shape}")
    else:
        input_shape = default_shape if require_flatten else (None, None, 3)
    if require_flatten and None in input_shape:
        raise ValueError(f"If `include_top` is True, you should specify a static `input_shape`; received "
                         f"input_shape={input_shape}")
    return input_shape


def validate_activation(classifier_activation, weights):
    """Pretrained tops allow only softmax or no activation (logits)."""
    if weights is None:
        return
    act = _activations.get(classifier_activation)
    if act not in (_activations.get("softmax"), _activations.get(None)):
        raise ValueError("Only `None` and `softmax` activations are allowed for the `classifier_activation` "
                         "argument when using pretrained weights with `include_top=True`; received "
                         f"classifier_activation={classifier_activation!r}")


def correct_pad(inputs, kernel_size):
    """((top, bottom), (left, right)) zero padding before a strided 'valid' convolution of
    `kernel_size` on `inputs` (channels-last), as Keras's helper: one less on the top/left of an
    even size, and on both sides when the height is unknown."""
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    rows, cols = inputs.shape[1:3]
    adjust = (1, 1) if rows is None else (1 - rows % 2, 1 if cols is None else 1 - cols % 2)
    correct = (kernel_size[0] // 2, kernel_size[1] // 2)
    return ((correct[0] - adjust[0], correct[0]), (correct[1] - adjust[1], correct[1]))


def input_layer(input_tensor, input_shape):
    """The image input: `input_tensor` itself when it is symbolic, else a new Input."""
    from ..layers.input_layer import Input, KerasTensor
    if input_tensor is None:
        return Input(shape=input_shape)
    if isinstance(input_tensor, KerasTensor):
        return input_tensor
    raise TypeError(f"`input_tensor` must be a symbolic tensor (the output of lamina.Input or of a layer called "
                    f"on one), received {type(input_tensor).__name__}")


def get_source_inputs(tensor):
    """The Input tensors that `tensor` is computed from (Keras's `get_source_inputs`)."""
    from ..layers.input_layer import InputLayer
    found, seen, stack = [], set(), [tensor]
    while stack:
        t = stack.pop()
        layer, idx, _ = t._keras_history
        node = layer._inbound_nodes[idx]
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(layer, InputLayer):
            found.append(t)
        else:
            stack.extend(reversed(node.inputs))
    return found[0] if len(found) == 1 else found


def preprocess_input(x, data_format=None, mode="caffe"):
    """Keras's ImageNet preprocessing of a batch (or one image) of RGB pixels in 0..255.

    mode "tf": to [-1, 1]; "torch": to [0, 1], then per-channel ImageNet mean/std; "caffe": RGB to
    BGR, then minus the ImageNet BGR mean. numpy arrays come back as float32 numpy arrays (a float
    input array is modified in place, as in Keras); tensors come back as tensors."""
    if mode not in ("caffe", "tf", "torch"):
        raise ValueError(f"preprocess_input: expected mode to be one of 'caffe', 'tf' or 'torch', received "
                         f"mode={mode!r}")
    data_format = data_format or "channels_last"
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError(f"preprocess_input: expected data_format 'channels_first' or 'channels_last', received "
                         f"{data_format!r}")
    from ..backend.tensor import Tensor
    from ..layers.input_layer import KerasTensor
    if isinstance(x, (Tensor, KerasTensor)):  # a symbolic input becomes op nodes of the functional graph
        return _preprocess_tensor(x, data_format, mode)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    caxis = (0 if x.ndim == 3 else 1) if data_format == "channels_first" else x.ndim - 1
    if x.ndim < 1 or x.shape[caxis] != 3 and mode != "tf":
        raise ValueError(f"preprocess_input: mode {mode!r} expects 3 colour channels on axis {caxis}, received an "
                         f"array of shape {x.shape}")
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    mean, std = _mean_std(mode)
    if mode == "torch":
        x /= 255.0
    else:
        x = np.flip(x, axis=caxis)
    shape = [1] * x.ndim
    shape[caxis] = 3
    x -= np.asarray(mean, x.dtype).reshape(shape)
    if std is not None:
        x /= np.asarray(std, x.dtype).reshape(shape)
    return x


def _mean_std(mode):
    if mode == "torch":
        return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    return [103.939, 116.779, 123.68], None


def _preprocess_tensor(x, data_format, mode):
    from .. import ops
    x = ops.cast(x, "float32")
    if mode == "tf":
        return x / 127.5 - 1.0
    caxis = (0 if x.ndim == 3 else 1) if data_format == "channels_first" else x.ndim - 1
    mean, std = _mean_std(mode)
    if mode == "torch":
        x = x / 255.0
    else:
        x = ops.flip(x, axis=caxis)
    shape = [1] * x.ndim
    shape[caxis] = 3
    x = x - np.asarray(mean, np.float32).reshape(shape)
    if std is not None:
        x = x / np.asarray(std, np.float32).reshape(shape)
    return x


def decode_predictions(preds, top=5):
    """[(class_name, description, score), ...] sorted by score, one list per row of `preds`
    (shape (samples, 1000)). Reads Keras's imagenet_class_index.json (LAMINA_DATA_DIR/pretrained,
    the caches, or a download checked against Keras's md5)."""
    global _class_index
    from ..backend.tensor import convert_to_numpy
    preds = np.asarray(convert_to_numpy(preds))
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError("decode_predictions expects a batch of predictions (a 2-D array of shape (samples, 1000)); "
                         f"received an array of shape {preds.shape}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"decode_predictions: `top` must be a positive integer, received top={top!r}")
    if _class_index is None:
        path = get_weights_file("imagenet_class_index.json", CLASS_INDEX_URL)
        with open(path, encoding="utf8") as f:
            _class_index = json.load(f)
    results = []
    for pred in preds:
        idx = np.argsort(-pred, kind="stable")[:top]
        results.append([tuple(_class_index[str(i)]) + (pred[i],) for i in idx])
    return results

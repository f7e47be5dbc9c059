import keras
# Scenario: multiclass semantic segmentation with DeepLabV3+ (examples/vision/deeplabv3_plus,
# Keras 3 version), on 64x64 synthetic images (a red square and a blue disc on a noisy background,
# 3 classes with masks of shape (64, 64, 1)) in place of the CIHP dataset, batches of 4 as in the
# example: the example's convolution_block (Conv2D with dilation_rate, padding="same",
# use_bias=False, kernel_initializer=keras.initializers.HeNormal(), BatchNormalization, then
# ops.nn.relu on the symbolic tensor), DilatedSpatialPyramidPooling (AveragePooling2D over the
# whole feature map, UpSampling2D(interpolation="bilinear") back, dilation rates 1, 6, 12, 18,
# Concatenate(axis=-1)), keras.applications.resnet50.preprocess_input on the Input and a
# keras.applications.ResNet50(weights=None, include_top=False, input_tensor=...) backbone (the
# example loads "imagenet": no downloads here) whose inner layers are read with
# get_layer("conv4_block6_2_relu").output and get_layer("conv2_block3_2_relu").output to build the
# functional DeeplabV3Plus model; compiled with SparseCategoricalCrossentropy(from_logits=True),
# Adam(0.001) and metrics=["accuracy"], fit (without the example's validation_data, to save a
# compilation), then predict and argmax. On the
# side: the DSPP block alone on fixed weights (kernels drawn from numpy, keyed by shape and
# dilation, so independent of weight order), bilinear UpSampling2D and preprocess_input on fixed
# values.
# Thresholds: the training loss falls by a quarter over 3 epochs; the final training pixel
# accuracy beats the all-background baseline; the backbone features have the example's strides
# (1/16 and 1/4 of the input) and the logits the input's size; the DSPP block keeps the spatial
# size; bilinear upsampling of a constant map stays constant.
import json

import numpy as np
from keras import layers
from keras import ops

keras.utils.set_random_seed(37)
rng = np.random.default_rng(0)

IMAGE_SIZE = 64
BATCH_SIZE = 4
NUM_CLASSES = 3
NUM_TRAIN_IMAGES = 16
NUM_VAL_IMAGES = 4


def make_scenes(n):
    """Images in [0, 255] with a red square (class 1) and a blue disc (class 2); masks (n, 64, 64, 1)."""
    rows, cols = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    images = rng.uniform(60, 140, (n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    masks = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 1), "float32")
    for i in range(n):
        r, c = rng.integers(4, 36, 2)
        side = rng.integers(14, 24)
        square = (rows >= r) & (rows < r + side) & (cols >= c) & (cols < c + side)
        cr, cc = rng.integers(12, 52, 2)
        radius = rng.integers(7, 12)
        disc = (rows - cr) ** 2 + (cols - cc) ** 2 <= radius ** 2
        images[i][square] = [220, 40, 40]
        images[i][disc] = [40, 40, 220]
        masks[i, square, 0] = 1
        masks[i, disc, 0] = 2
    images += rng.normal(0, 10, images.shape).astype("float32")
    return np.clip(images, 0, 255), masks


train_images, train_masks = make_scenes(NUM_TRAIN_IMAGES)
val_images, val_masks = make_scenes(NUM_VAL_IMAGES)


def convolution_block(
    block_input,
    num_filters=256,
    kernel_size=3,
    dilation_rate=1,
    use_bias=False,
):
    x = layers.Conv2D(
        num_filters,
        kernel_size=kernel_size,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=keras.initializers.HeNormal(),
    )(block_input)
    x = layers.BatchNormalization()(x)
    return ops.nn.relu(x)


def DilatedSpatialPyramidPooling(dspp_input):
    dims = dspp_input.shape
    x = layers.AveragePooling2D(pool_size=(dims[-3], dims[-2]))(dspp_input)
    x = convolution_block(x, kernel_size=1, use_bias=True)
    out_pool = layers.UpSampling2D(
        size=(dims[-3] // x.shape[1], dims[-2] // x.shape[2]),
        interpolation="bilinear",
    )(x)

    out_1 = convolution_block(dspp_input, kernel_size=1, dilation_rate=1)
    out_6 = convolution_block(dspp_input, kernel_size=3, dilation_rate=6)
    out_12 = convolution_block(dspp_input, kernel_size=3, dilation_rate=12)
    out_18 = convolution_block(dspp_input, kernel_size=3, dilation_rate=18)

    x = layers.Concatenate(axis=-1)([out_pool, out_1, out_6, out_12, out_18])
    output = convolution_block(x, kernel_size=1)
    return output


backbone_shapes = {}


def DeeplabV3Plus(image_size, num_classes):
    model_input = keras.Input(shape=(image_size, image_size, 3))
    preprocessed = keras.applications.resnet50.preprocess_input(model_input)
    resnet50 = keras.applications.ResNet50(
        weights=None, include_top=False, input_tensor=preprocessed
    )
    backbone_shapes["resnet50_params"] = int(resnet50.count_params())
    backbone_shapes["resnet50_layers"] = len(resnet50.layers)
    x = resnet50.get_layer("conv4_block6_2_relu").output
    backbone_shapes["conv4_block6_2_relu"] = list(x.shape)
    x = DilatedSpatialPyramidPooling(x)
    backbone_shapes["dspp"] = list(x.shape)

    input_a = layers.UpSampling2D(
        size=(image_size // 4 // x.shape[1], image_size // 4 // x.shape[2]),
        interpolation="bilinear",
    )(x)
    input_b = resnet50.get_layer("conv2_block3_2_relu").output
    backbone_shapes["conv2_block3_2_relu"] = list(input_b.shape)
    input_b = convolution_block(input_b, num_filters=48, kernel_size=1)

    x = layers.Concatenate(axis=-1)([input_a, input_b])
    x = convolution_block(x)
    x = convolution_block(x)
    x = layers.UpSampling2D(
        size=(image_size // x.shape[1], image_size // x.shape[2]),
        interpolation="bilinear",
    )(x)
    model_output = layers.Conv2D(num_classes, kernel_size=(1, 1), padding="same")(x)
    return keras.Model(inputs=model_input, outputs=model_output)


model = DeeplabV3Plus(image_size=IMAGE_SIZE, num_classes=NUM_CLASSES)

loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate=0.001),
    loss=loss,
    metrics=["accuracy"],
)

history = model.fit(train_images, train_masks, batch_size=BATCH_SIZE, epochs=3, verbose=0)


logits = model.predict(val_images, batch_size=BATCH_SIZE, verbose=0)
# the example's infer(), on the batch already predicted
prediction_mask = np.argmax(np.squeeze(logits[:1]), axis=2)
background_rate = float((train_masks == 0).mean())

# --- the DSPP block alone, on fixed weights (inference mode: BatchNormalization uses its
# initial moving statistics, mean 0 and variance 1) ---
dspp_in = keras.Input(shape=(8, 8, 16))
dspp_model = keras.Model(dspp_in, DilatedSpatialPyramidPooling(dspp_in))
for layer in dspp_model.layers:
    if isinstance(layer, layers.Conv2D):
        shape = tuple(layer.kernel.shape)
        key = int(np.prod(shape)) + 7 * layer.dilation_rate[0] + (1 if layer.use_bias else 0)
        r = np.random.default_rng(key)
        layer.kernel.assign(r.normal(0, 1 / np.sqrt(np.prod(shape[:3])), shape).astype("float32"))
        if layer.use_bias:
            layer.bias.assign(r.normal(0, 0.1, layer.bias.shape).astype("float32"))
dspp_x = np.random.default_rng(1).normal(0, 1, (2, 8, 8, 16)).astype("float32")
dspp_out = ops.convert_to_numpy(dspp_model(dspp_x, training=False))

# --- bilinear UpSampling2D and preprocess_input on fixed values ---
small = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)
upsampled = ops.convert_to_numpy(layers.UpSampling2D(size=(2, 2), interpolation="bilinear")(small))
constant_up = ops.convert_to_numpy(
    layers.UpSampling2D(size=(4, 4), interpolation="bilinear")(np.full((1, 1, 1, 3), 2.5, "float32")))
pre = ops.convert_to_numpy(keras.applications.resnet50.preprocess_input(
    np.array([[[[10.0, 20.0, 30.0]]]], "float32")))

hist_loss = history.history["loss"]
hist_acc = history.history["accuracy"]
print("RESULT " + json.dumps({
    "figures": {"params": int(model.count_params()),
                "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                "layer_count": len(model.layers), "output_shape": list(logits.shape),
                "prediction_mask_shape": list(prediction_mask.shape),
                "backbone": backbone_shapes, "history_keys": sorted(history.history),
                "dspp_params": int(dspp_model.count_params()), "dspp_shape": list(dspp_out.shape),
                "dspp_output_sum": round(float(dspp_out.sum()), 2),
                "dspp_output_first": [round(float(v), 4) for v in dspp_out[0, 0, 0, :4]],
                "upsampled_bilinear": np.round(upsampled[0, :, :, 0], 4).tolist(),
                "preprocess_input": [round(float(v), 3) for v in pre.reshape(-1)],
                "final_loss": round(hist_loss[-1], 4)},
    "checks": {"loss_falls_by_a_quarter": hist_loss[-1] <= hist_loss[0] * 0.75,
               "train_accuracy_beats_background": hist_acc[-1] > background_rate + 0.02,
               "backbone_strides_16_and_4": backbone_shapes["conv4_block6_2_relu"][1:3] == [4, 4]
               and backbone_shapes["conv2_block3_2_relu"][1:3] == [16, 16],
               "logits_full_size": list(logits.shape) == [NUM_VAL_IMAGES, IMAGE_SIZE, IMAGE_SIZE, NUM_CLASSES],
               "dspp_keeps_size": list(dspp_out.shape) == [2, 8, 8, 256] and bool((dspp_out >= 0).all()),
               "constant_stays_constant": bool(np.allclose(constant_up, 2.5, atol=1e-5))
               and constant_up.shape == (1, 4, 4, 3)},
    "info": {"loss": [round(v, 4) for v in hist_loss], "accuracy": [round(v, 4) for v in hist_acc],
             "background_rate": round(background_rate, 4),
             "val_pixel_accuracy_predict": round(float((logits.argmax(-1) == val_masks[..., 0]).mean()), 4)},
}))

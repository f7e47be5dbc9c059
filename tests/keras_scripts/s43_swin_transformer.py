import keras
# Scenario: image classification with a Swin Transformer (examples/vision/swin_transformers,
# Keras 3 version), on small synthetic colour images in place of CIFAR-100: the example's
# window_partition / window_reverse helpers (ops.reshape, ops.transpose), a DropPath layer (the
# example's first version, ported to keras.random.uniform with a SeedGenerator and gated on
# `training`), its WindowAttention layer (qkv Dense, add_weight in __init__ for the relative
# position bias table, a non-trainable integer keras.Variable relative_position_index built with
# numpy index arithmetic, ops.take of the table, q @ k with the `@` operator, the shifted-window
# mask added through ops.reshape, keras.activations.softmax, Dropout), its SwinTransformer block
# (two LayerNormalizations, a gelu MLP Sequential, build() computing the attention mask with numpy
# slices, window_partition, ops.expand_dims, ops.where and storing it in a non-trainable
# keras.Variable, ops.roll by -shift and +shift on axes [1, 2], call(x, training=False)), a
# PatchExtract layer on keras.ops.image.extract_patches (the example does this step in tf.data),
# PatchEmbedding (Dense plus an Embedding of ops.arange positions) and PatchMerging (strided
# slicing x[:, 0::2, 0::2, :], ops.concatenate, Dense without bias); the example's model (Input,
# PatchExtract, PatchEmbedding, SwinTransformer with shift 0 then 1, PatchMerging,
# GlobalAveragePooling1D, softmax Dense) compiled with
# CategoricalCrossentropy(label_smoothing=0.1), AdamW, CategoricalAccuracy and
# TopKCategoricalAccuracy(5), fitted with validation_data, evaluated, and its weights saved to a
# .weights.h5 file and loaded into a fresh model.
# Thresholds: window_reverse undoes window_partition; ops.roll by +1 undoes ops.roll by -1; the
# relative_position_index and the attention mask match the numpy construction of the paper (mask
# values 0 or -100, zero on the diagonal); WindowAttention and a SwinTransformer block with fixed
# weights match a numpy reimplementation; the first patch equals the image's top-left 2x2 block;
# DropPath is the identity at inference and zeroes whole samples in training; the training loss
# falls by a third; test accuracy at least 0.6 (chance 0.125) and top-5 accuracy at least the
# accuracy; the reloaded weights predict the same.
import json
import os
import tempfile

import numpy as np
from keras import layers
from keras import ops

keras.utils.set_random_seed(7)
rng = np.random.default_rng(0)

"""
## Configure the hyperparameters
"""

num_classes = 8
input_shape = (16, 16, 3)

patch_size = (2, 2)  # 2-by-2 sized patches
dropout_rate = 0.03  # Dropout rate
num_heads = 4  # Attention heads
embed_dim = 32  # Embedding dimension
num_mlp = 64  # MLP layer size
# Convert embedded patches to query, key, and values with a learnable additive
# value
qkv_bias = True
window_size = 2  # Size of attention window
shift_size = 1  # Size of shifting window
image_dimension = 16  # Initial image size

num_patch_x = input_shape[0] // patch_size[0]
num_patch_y = input_shape[1] // patch_size[1]

learning_rate = 3e-3
batch_size = 64
num_epochs = 8
validation_split = 0.1
weight_decay = 0.0001
label_smoothing = 0.1

"""
## Prepare the data

Synthetic images: a bright square in one of the four quadrants, red or blue (8 classes), on a
noisy grey background; labels one-hot encoded as in the example.
"""


def make_images(n):
    labels = rng.integers(0, num_classes, n)
    images = rng.normal(90, 30, (n, *input_shape))
    colours = np.array([[250, 40, 40], [40, 40, 250]], "float32")
    for i, label in enumerate(labels):
        quadrant, colour = label // 2, label % 2
        y0, x0 = (quadrant // 2) * 8, (quadrant % 2) * 8
        y, x = y0 + rng.integers(0, 4), x0 + rng.integers(0, 4)
        images[i, y:y + 4, x:x + 4, :] = colours[colour]
    return np.clip(images, 0, 255).astype("float32") / 255.0, labels


x_train, y_train_int = make_images(640)
x_test, y_test_int = make_images(192)
y_train = keras.utils.to_categorical(y_train_int, num_classes)
y_test = keras.utils.to_categorical(y_test_int, num_classes)
num_train_samples = int(len(x_train) * (1 - validation_split))
x_train, x_val = np.split(x_train, [num_train_samples])
y_train, y_val = np.split(y_train, [num_train_samples])

"""
## Helper functions
"""


def window_partition(x, window_size):
    _, height, width, channels = x.shape
    patch_num_y = height // window_size
    patch_num_x = width // window_size
    x = ops.reshape(
        x,
        (
            -1,
            patch_num_y,
            window_size,
            patch_num_x,
            window_size,
            channels,
        ),
    )
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    windows = ops.reshape(x, (-1, window_size, window_size, channels))
    return windows


def window_reverse(windows, window_size, height, width, channels):
    patch_num_y = height // window_size
    patch_num_x = width // window_size
    x = ops.reshape(
        windows,
        (
            -1,
            patch_num_y,
            patch_num_x,
            window_size,
            window_size,
            channels,
        ),
    )
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    x = ops.reshape(x, (-1, height, width, channels))
    return x


class DropPath(layers.Layer):
    def __init__(self, drop_prob=None, **kwargs):
        super().__init__(**kwargs)
        self.drop_prob = drop_prob
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, x, training=None):
        if not training:
            return x
        input_shape = ops.shape(x)
        batch_size = input_shape[0]
        rank = len(x.shape)
        shape = (batch_size,) + (1,) * (rank - 1)
        random_tensor = (1 - self.drop_prob) + keras.random.uniform(
            shape, dtype=x.dtype, seed=self.seed_generator
        )
        path_mask = ops.floor(random_tensor)
        output = ops.divide(x, 1 - self.drop_prob) * path_mask
        return output


"""
## Window based multi-head self-attention
"""


class WindowAttention(layers.Layer):
    def __init__(
        self,
        dim,
        window_size,
        num_heads,
        qkv_bias=True,
        dropout_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = layers.Dense(dim * 3, use_bias=qkv_bias)
        self.dropout = layers.Dropout(dropout_rate)
        self.proj = layers.Dense(dim)

        num_window_elements = (2 * self.window_size[0] - 1) * (
            2 * self.window_size[1] - 1
        )
        self.relative_position_bias_table = self.add_weight(
            shape=(num_window_elements, self.num_heads),
            initializer=keras.initializers.Zeros(),
            trainable=True,
        )
        coords_h = np.arange(self.window_size[0])
        coords_w = np.arange(self.window_size[1])
        coords_matrix = np.meshgrid(coords_h, coords_w, indexing="ij")
        coords = np.stack(coords_matrix)
        coords_flatten = coords.reshape(2, -1)
        relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]
        relative_coords = relative_coords.transpose([1, 2, 0])
        relative_coords[:, :, 0] += self.window_size[0] - 1
        relative_coords[:, :, 1] += self.window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * self.window_size[1] - 1
        relative_position_index = relative_coords.sum(-1)

        self.relative_position_index = keras.Variable(
            initializer=relative_position_index,
            shape=relative_position_index.shape,
            dtype="int",
            trainable=False,
        )

    def call(self, x, mask=None):
        _, size, channels = x.shape
        head_dim = channels // self.num_heads
        x_qkv = self.qkv(x)
        x_qkv = ops.reshape(x_qkv, (-1, size, 3, self.num_heads, head_dim))
        x_qkv = ops.transpose(x_qkv, (2, 0, 3, 1, 4))
        q, k, v = x_qkv[0], x_qkv[1], x_qkv[2]
        q = q * self.scale
        k = ops.transpose(k, (0, 1, 3, 2))
        attn = q @ k

        num_window_elements = self.window_size[0] * self.window_size[1]
        relative_position_index_flat = ops.reshape(self.relative_position_index, (-1,))
        relative_position_bias = ops.take(
            self.relative_position_bias_table,
            relative_position_index_flat,
            axis=0,
        )
        relative_position_bias = ops.reshape(
            relative_position_bias,
            (num_window_elements, num_window_elements, -1),
        )
        relative_position_bias = ops.transpose(relative_position_bias, (2, 0, 1))
        attn = attn + ops.expand_dims(relative_position_bias, axis=0)

        if mask is not None:
            nW = mask.shape[0]
            mask_float = ops.cast(
                ops.expand_dims(ops.expand_dims(mask, axis=1), axis=0),
                "float32",
            )
            attn = ops.reshape(attn, (-1, nW, self.num_heads, size, size)) + mask_float
            attn = ops.reshape(attn, (-1, self.num_heads, size, size))
            attn = keras.activations.softmax(attn, axis=-1)
        else:
            attn = keras.activations.softmax(attn, axis=-1)
        attn = self.dropout(attn)

        x_qkv = attn @ v
        x_qkv = ops.transpose(x_qkv, (0, 2, 1, 3))
        x_qkv = ops.reshape(x_qkv, (-1, size, channels))
        x_qkv = self.proj(x_qkv)
        x_qkv = self.dropout(x_qkv)
        return x_qkv


"""
## The complete Swin Transformer model
"""


class SwinTransformer(layers.Layer):
    def __init__(
        self,
        dim,
        num_patch,
        num_heads,
        window_size=7,
        shift_size=0,
        num_mlp=1024,
        qkv_bias=True,
        dropout_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)

        self.dim = dim  # number of input dimensions
        self.num_patch = num_patch  # number of embedded patches
        self.num_heads = num_heads  # number of attention heads
        self.window_size = window_size  # size of window
        self.shift_size = shift_size  # size of window shift
        self.num_mlp = num_mlp  # number of MLP nodes

        self.norm1 = layers.LayerNormalization(epsilon=1e-5)
        self.attn = WindowAttention(
            dim,
            window_size=(self.window_size, self.window_size),
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            dropout_rate=dropout_rate,
        )
        self.drop_path = DropPath(dropout_rate)
        self.norm2 = layers.LayerNormalization(epsilon=1e-5)

        self.mlp = keras.Sequential(
            [
                layers.Dense(num_mlp),
                layers.Activation(keras.activations.gelu),
                layers.Dropout(dropout_rate),
                layers.Dense(dim),
                layers.Dropout(dropout_rate),
            ]
        )

        if min(self.num_patch) < self.window_size:
            self.shift_size = 0
            self.window_size = min(self.num_patch)

    def build(self, input_shape):
        if self.shift_size == 0:
            self.attn_mask = None
        else:
            height, width = self.num_patch
            h_slices = (
                slice(0, -self.window_size),
                slice(-self.window_size, -self.shift_size),
                slice(-self.shift_size, None),
            )
            w_slices = (
                slice(0, -self.window_size),
                slice(-self.window_size, -self.shift_size),
                slice(-self.shift_size, None),
            )
            mask_array = np.zeros((1, height, width, 1))
            count = 0
            for h in h_slices:
                for w in w_slices:
                    mask_array[:, h, w, :] = count
                    count += 1
            mask_array = ops.convert_to_tensor(mask_array)

            # mask array to windows
            mask_windows = window_partition(mask_array, self.window_size)
            mask_windows = ops.reshape(
                mask_windows, [-1, self.window_size * self.window_size]
            )
            attn_mask = ops.expand_dims(mask_windows, axis=1) - ops.expand_dims(
                mask_windows, axis=2
            )
            attn_mask = ops.where(attn_mask != 0, -100.0, attn_mask)
            attn_mask = ops.where(attn_mask == 0, 0.0, attn_mask)
            self.attn_mask = keras.Variable(
                initializer=attn_mask,
                shape=attn_mask.shape,
                dtype=attn_mask.dtype,
                trainable=False,
            )

    def call(self, x, training=False):
        height, width = self.num_patch
        _, num_patches_before, channels = x.shape
        x_skip = x
        x = self.norm1(x)
        x = ops.reshape(x, (-1, height, width, channels))
        if self.shift_size > 0:
            shifted_x = ops.roll(
                x, shift=[-self.shift_size, -self.shift_size], axis=[1, 2]
            )
        else:
            shifted_x = x

        x_windows = window_partition(shifted_x, self.window_size)
        x_windows = ops.reshape(
            x_windows, (-1, self.window_size * self.window_size, channels)
        )
        attn_windows = self.attn(x_windows, mask=self.attn_mask)

        attn_windows = ops.reshape(
            attn_windows,
            (-1, self.window_size, self.window_size, channels),
        )
        shifted_x = window_reverse(
            attn_windows, self.window_size, height, width, channels
        )
        if self.shift_size > 0:
            x = ops.roll(
                shifted_x, shift=[self.shift_size, self.shift_size], axis=[1, 2]
            )
        else:
            x = shifted_x

        x = ops.reshape(x, (-1, height * width, channels))
        x = self.drop_path(x, training=training)
        x = x_skip + x
        x_skip = x
        x = self.norm2(x)
        x = self.mlp(x)
        x = self.drop_path(x)
        x = x_skip + x
        return x


"""
## Extract and embed patches
"""


class PatchExtract(layers.Layer):
    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size_x = patch_size[0]
        self.patch_size_y = patch_size[0]

    def call(self, images):
        batch_size = ops.shape(images)[0]
        patches = keras.ops.image.extract_patches(
            images, size=(self.patch_size_x, self.patch_size_y)
        )
        patch_dim = patches.shape[-1]
        patch_num = patches.shape[1]
        return ops.reshape(patches, (batch_size, patch_num * patch_num, patch_dim))


class PatchEmbedding(layers.Layer):
    def __init__(self, num_patch, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_patch = num_patch
        self.proj = layers.Dense(embed_dim)
        self.pos_embed = layers.Embedding(input_dim=num_patch, output_dim=embed_dim)

    def call(self, patch):
        pos = ops.arange(start=0, stop=self.num_patch)
        return self.proj(patch) + self.pos_embed(pos)


class PatchMerging(keras.layers.Layer):
    def __init__(self, num_patch, embed_dim):
        super().__init__()
        self.num_patch = num_patch
        self.embed_dim = embed_dim
        self.linear_trans = layers.Dense(2 * embed_dim, use_bias=False)

    def call(self, x):
        height, width = self.num_patch
        _, _, C = x.shape
        x = ops.reshape(x, (-1, height, width, C))
        x0 = x[:, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, :]
        x3 = x[:, 1::2, 1::2, :]
        x = ops.concatenate((x0, x1, x2, x3), axis=-1)
        x = ops.reshape(x, (-1, (height // 2) * (width // 2), 4 * C))
        return self.linear_trans(x)


"""
## Check the building blocks on fixed values
"""

# window_partition / window_reverse and ops.roll round trips
grid = rng.normal(size=(2, num_patch_x, num_patch_y, 5)).astype("float32")
windows = window_partition(ops.convert_to_tensor(grid), window_size)
back = ops.convert_to_numpy(window_reverse(windows, window_size, num_patch_x, num_patch_y, 5))
np_windows = grid.reshape(2, 4, 2, 4, 2, 5).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 2, 2, 5)
rolled = ops.roll(ops.convert_to_tensor(grid), shift=[-1, -1], axis=[1, 2])
unrolled = ops.convert_to_numpy(ops.roll(rolled, shift=[1, 1], axis=[1, 2]))


def fixed(shape):
    """A deterministic value for a weight, depending on its shape only."""
    size = int(np.prod(shape))
    return (np.sin(np.arange(size) * 0.37 + 0.1 * len(shape)) * 0.3).reshape(shape).astype("float32")


# WindowAttention with fixed weights against numpy
attn_layer = WindowAttention(8, window_size=(2, 2), num_heads=2, qkv_bias=True)
tokens = rng.normal(size=(3, 4, 8)).astype("float32")
attn_layer(tokens)  # builds qkv and proj
for w in attn_layer.trainable_weights:
    w.assign(fixed(w.shape))
relative_position_index = ops.convert_to_numpy(attn_layer.relative_position_index)
attn_out = ops.convert_to_numpy(attn_layer(tokens))


def np_softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_window_attention(x, qkv_w, qkv_b, proj_w, proj_b, table, index, num_heads, mask=None):
    b, n, c = x.shape
    hd = c // num_heads
    qkv = (x @ qkv_w + qkv_b).reshape(b, n, 3, num_heads, hd).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
    a = q @ k.transpose(0, 1, 3, 2)
    bias = table[index.reshape(-1)].reshape(n, n, -1).transpose(2, 0, 1)
    a = a + bias[None]
    if mask is not None:
        nw = mask.shape[0]
        a = (a.reshape(-1, nw, num_heads, n, n) + mask[None, :, None]).reshape(-1, num_heads, n, n)
    a = np_softmax(a)
    out = (a @ v).transpose(0, 2, 1, 3).reshape(b, n, c)
    return out @ proj_w + proj_b


attn_expected = np_window_attention(
    tokens, fixed((8, 24)), fixed((24,)), fixed((8, 8)), fixed((8,)), fixed((9, 2)),
    relative_position_index, 2)

# a shifted SwinTransformer block with fixed weights against numpy
block = SwinTransformer(dim=8, num_patch=(4, 4), num_heads=2, window_size=2, shift_size=1, num_mlp=16,
                        name="fixed_block")
block_in = rng.normal(size=(2, 16, 8)).astype("float32")
block(block_in)
for w in block.trainable_weights:
    w.assign(fixed(w.shape))
attn_mask = ops.convert_to_numpy(block.attn_mask)
block_out = ops.convert_to_numpy(block(block_in))


def np_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_gelu(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def np_mask(height, width, ws, ss):
    img = np.zeros((1, height, width, 1))
    count = 0
    for h in (slice(0, -ws), slice(-ws, -ss), slice(-ss, None)):
        for w in (slice(0, -ws), slice(-ws, -ss), slice(-ss, None)):
            img[:, h, w, :] = count
            count += 1
    win = img.reshape(1, height // ws, ws, width // ws, ws, 1).transpose(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws)
    m = win[:, None, :] - win[:, :, None]
    return np.where(m != 0, -100.0, 0.0)


def np_swin_block(x):
    b, n, c = x.shape
    h = np_layer_norm(x, fixed((8,)), fixed((8,))).reshape(b, 4, 4, c)
    h = np.roll(h, shift=(-1, -1), axis=(1, 2))
    win = h.reshape(b, 2, 2, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 4, c)
    win = np_window_attention(win, fixed((8, 24)), fixed((24,)), fixed((8, 8)), fixed((8,)), fixed((9, 2)),
                              relative_position_index, 2, mask=np_mask(4, 4, 2, 1))
    h = win.reshape(b, 2, 2, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, 4, 4, c)
    h = np.roll(h, shift=(1, 1), axis=(1, 2)).reshape(b, n, c)
    x = x + h
    m = np_layer_norm(x, fixed((8,)), fixed((8,)))
    m = np_gelu(m @ fixed((8, 16)) + fixed((16,))) @ fixed((16, 8)) + fixed((8,))
    return x + m


block_expected = np_swin_block(block_in.astype("float64"))

# DropPath: identity at inference, whole samples zeroed (or scaled) in training
drop = DropPath(0.5)
ones = np.ones((64, 3, 2), "float32")
drop_infer = ops.convert_to_numpy(drop(ones))
drop_train = ops.convert_to_numpy(drop(ones, training=True))
per_sample = drop_train.reshape(64, -1)
drop_whole_samples = bool(np.all(per_sample.min(1) == per_sample.max(1))
                          and set(np.unique(per_sample).tolist()) <= {0.0, 2.0})

# PatchExtract on one image
image = x_train[:1]
patches = ops.convert_to_numpy(PatchExtract(patch_size)(image))
first_block = image[0, :2, :2, :].reshape(-1)

"""
## Build the model
"""


def create_model():
    input = layers.Input(shape=input_shape)
    x = PatchExtract(patch_size)(input)
    x = PatchEmbedding(num_patch_x * num_patch_y, embed_dim)(x)
    x = SwinTransformer(
        dim=embed_dim,
        num_patch=(num_patch_x, num_patch_y),
        num_heads=num_heads,
        window_size=window_size,
        shift_size=0,
        num_mlp=num_mlp,
        qkv_bias=qkv_bias,
        dropout_rate=dropout_rate,
    )(x)
    x = SwinTransformer(
        dim=embed_dim,
        num_patch=(num_patch_x, num_patch_y),
        num_heads=num_heads,
        window_size=window_size,
        shift_size=shift_size,
        num_mlp=num_mlp,
        qkv_bias=qkv_bias,
        dropout_rate=dropout_rate,
    )(x)
    x = PatchMerging((num_patch_x, num_patch_y), embed_dim=embed_dim)(x)
    x = layers.GlobalAveragePooling1D()(x)
    output = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(input, output)


"""
## Train
"""

model = create_model()
model.compile(
    loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
    optimizer=keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=weight_decay
    ),
    metrics=[
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        keras.metrics.TopKCategoricalAccuracy(5, name="top-5-accuracy"),
    ],
)

history = model.fit(
    x_train,
    y_train,
    batch_size=batch_size,
    epochs=num_epochs,
    validation_data=(x_val, y_val),
    verbose=0,
)

loss, accuracy, top_5_accuracy = model.evaluate(x_test, y_test, verbose=0)

# save the weights and load them into a fresh model
weights_path = os.path.join(tempfile.mkdtemp(), "swin.weights.h5")
model.save_weights(weights_path)
reloaded = create_model()
reloaded.load_weights(weights_path)
pred = model.predict(x_test[:32], verbose=0)
pred_reloaded = reloaded.predict(x_test[:32], verbose=0)

trainable_count = int(sum(np.prod(w.shape) for w in model.trainable_weights))
non_trainable_count = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
losses = history.history["loss"]

print("RESULT " + json.dumps({
    "figures": {"params": int(model.count_params()), "trainable_params": trainable_count,
                "non_trainable_params": non_trainable_count,
                "output_shape": list(model.output.shape),
                "layer_classes": [layer.__class__.__name__ for layer in model.layers],
                "history_keys": sorted(history.history),
                "windows_shape": list(windows.shape), "patches_shape": list(patches.shape),
                "relative_position_index": relative_position_index.tolist(),
                "attn_mask_shape": list(attn_mask.shape),
                "attn_mask_masked_entries": int((attn_mask == -100.0).sum()),
                "window_attention_sum": round(float(attn_out.sum()), 4),
                "window_attention_abs_sum": round(float(np.abs(attn_out).sum()), 4),
                "swin_block_abs_sum": round(float(np.abs(block_out).sum()), 4),
                "test_loss": round(float(loss), 4)},
    "checks": {"window_reverse_undoes_partition": bool(np.array_equal(back, grid)),
               "window_partition_matches_numpy": bool(np.array_equal(ops.convert_to_numpy(windows), np_windows)),
               "roll_back_is_identity": bool(np.array_equal(unrolled, grid)),
               "relative_position_index_int": "int" in str(attn_layer.relative_position_index.dtype),
               "relative_position_index_not_trainable": not attn_layer.relative_position_index.trainable,
               "attn_mask_matches_numpy": bool(np.array_equal(attn_mask, np_mask(4, 4, 2, 1))),
               "attn_mask_zero_diagonal": bool(np.all(np.diagonal(attn_mask, axis1=1, axis2=2) == 0)),
               "window_attention_matches_numpy": bool(np.allclose(attn_out, attn_expected, atol=1e-4)),
               "swin_block_matches_numpy": bool(np.allclose(block_out, block_expected, atol=1e-4)),
               "drop_path_identity_at_inference": bool(np.array_equal(drop_infer, ones)),
               "drop_path_drops_whole_samples": drop_whole_samples,
               "drop_path_drops_some": bool(0 < (per_sample[:, 0] == 0).sum() < 64),
               "first_patch_is_top_left_block": bool(np.allclose(patches[0, 0], first_block)),
               "loss_falls_by_a_third": losses[-1] < losses[0] * 2 / 3,
               "test_accuracy_at_least_0.6": accuracy >= 0.6,
               "top5_at_least_accuracy": top_5_accuracy >= accuracy,
               "reloaded_weights_predict_the_same": bool(np.allclose(pred, pred_reloaded, atol=1e-5))},
    "info": {"loss": [round(v, 4) for v in losses],
             "val_accuracy": [round(v, 4) for v in history.history["val_accuracy"]],
             "test_accuracy": round(float(accuracy), 4), "test_top5_accuracy": round(float(top_5_accuracy), 4),
             "max_attention_error": float(np.abs(attn_out - attn_expected).max()),
             "max_block_error": float(np.abs(block_out - block_expected).max()),
             "attn_mask_dtype": str(attn_mask.dtype)},
}))

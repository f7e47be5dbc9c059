import keras
# Scenario: Compact Convolutional Transformers (examples/vision/cct, Keras 3 version), on small
# synthetic textured colour images in place of CIFAR-10: the CCTTokenizer layer (a Sequential of
# Conv2D(padding="valid", use_bias=False, relu, he_normal), ZeroPadding2D and
# MaxPooling2D(3, 2, "same"), then ops.reshape to a sequence), the optional positional embedding
# whose sequence length is computed, as in the example's positional_embedding method, by calling
# the tokenizer on a dummy keras.ops.ones input (here feeding the Keras 3 version's
# PositionEmbedding layer: add_weight, ops.slice, ops.broadcast_to, compute_output_shape), the
# StochasticDepth layer (keras.random.uniform with a keras.random.SeedGenerator(1337), ops.floor,
# only when training) with np.linspace drop rates, transformer blocks of
# LayerNormalization(epsilon=1e-5), MultiHeadAttention(dropout=0.1), Add and a gelu MLP with
# Dropout, SequencePooling (Dense(1), ops.softmax over the sequence, ops.transpose, ops.matmul,
# ops.squeeze), a data_augmentation Sequential (Rescaling, RandomCrop, RandomFlip) inside the model,
# one-hot labels from keras.utils.to_categorical, AdamW,
# CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), CategoricalAccuracy and
# TopKCategoricalAccuracy(5), fit with validation_split and ModelCheckpoint(save_best_only,
# save_weights_only) to a .weights.h5 file, load_weights and evaluate.
# Thresholds: test accuracy at least 0.6 (chance 0.125) and top-5 accuracy at least the accuracy;
# the training loss falls by a third; the reloaded best weights score the best val_accuracy again;
# the dummy-input sequence length equals the tokenizer's symbolic output length (16 for 16x16
# images); StochasticDepth(0.5) keeps or zeroes whole samples (kept ones scaled by 2) when training
# and is the identity otherwise; SequencePooling and the label-smoothed crossentropy match numpy.
import json
import math
import os
import tempfile

import numpy as np
from keras import layers

keras.utils.set_random_seed(42)
rng = np.random.default_rng(0)

"""
## Hyperparameters and constants
"""

positional_emb = True
conv_layers = 2
projection_dim = 32

num_heads = 2
transformer_units = [
    projection_dim,
    projection_dim,
]
transformer_layers = 2
stochastic_depth_rate = 0.1

learning_rate = 0.001
weight_decay = 0.0001
batch_size = 64
num_epochs = 5
image_size = 16

"""
## Synthetic stand-in for CIFAR-10: eight classes, a texture (horizontal stripes, vertical
stripes, checkerboard, a smooth blob) in a warm or a cool colour.
"""

num_classes = 8
input_shape = (16, 16, 3)


def make_images(n):
    labels = rng.integers(0, num_classes, n)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    images = np.zeros((n, image_size, image_size, 3), "float32")
    for i, label in enumerate(labels):
        texture, warm = label % 4, label // 4
        period = rng.integers(2, 4)
        phase = rng.integers(0, period)
        if texture == 0:
            mask = ((yy + phase) // period) % 2
        elif texture == 1:
            mask = ((xx + phase) // period) % 2
        elif texture == 2:
            mask = (((yy + phase) // period) + ((xx + phase) // period)) % 2
        else:
            cy, cx = rng.uniform(4, 12, 2)
            mask = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12.0)
        fg = rng.uniform(150, 255, 3) * (np.array([1.0, 0.5, 0.2]) if warm else np.array([0.2, 0.5, 1.0]))
        bg = rng.uniform(0, 60, 3)
        images[i] = mask[..., None] * fg + (1 - mask[..., None]) * bg
    images += rng.normal(0, 12, images.shape)
    return np.clip(images, 0, 255).astype("float32"), labels.reshape(-1, 1)


(x_train, y_train), (x_test, y_test) = make_images(640), make_images(128)

y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

"""
## The CCT tokenizer
"""


class CCTTokenizer(layers.Layer):
    def __init__(
        self,
        kernel_size=3,
        stride=1,
        padding=1,
        pooling_kernel_size=3,
        pooling_stride=2,
        num_conv_layers=conv_layers,
        num_output_channels=[16, projection_dim],
        positional_emb=positional_emb,
        **kwargs,
    ):
        super().__init__(**kwargs)

        # This is our tokenizer.
        self.conv_model = keras.Sequential()
        for i in range(num_conv_layers):
            self.conv_model.add(
                layers.Conv2D(
                    num_output_channels[i],
                    kernel_size,
                    stride,
                    padding="valid",
                    use_bias=False,
                    activation="relu",
                    kernel_initializer="he_normal",
                )
            )
            self.conv_model.add(layers.ZeroPadding2D(padding))
            self.conv_model.add(
                layers.MaxPooling2D(pooling_kernel_size, pooling_stride, "same")
            )

        self.positional_emb = positional_emb

    def call(self, images):
        outputs = self.conv_model(images)
        # After passing the images through our mini-network the spatial dimensions
        # are flattened to form sequences.
        reshaped = keras.ops.reshape(
            outputs,
            (
                -1,
                keras.ops.shape(outputs)[1] * keras.ops.shape(outputs)[2],
                keras.ops.shape(outputs)[-1],
            ),
        )
        return reshaped

    def positional_embedding(self, image_size):
        # Positional embeddings are optional in CCT. Here, we calculate
        # the number of sequences with a dummy input (as the example's first version does).
        if self.positional_emb:
            dummy_inputs = keras.ops.ones((1, image_size, image_size, 3))
            dummy_outputs = self.call(dummy_inputs)
            sequence_length = keras.ops.shape(dummy_outputs)[1]
            projection_dim = keras.ops.shape(dummy_outputs)[-1]
            return sequence_length, projection_dim
        else:
            return None


class PositionEmbedding(keras.layers.Layer):
    def __init__(
        self,
        sequence_length,
        initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if sequence_length is None:
            raise ValueError(
                "`sequence_length` must be an Integer, received `None`."
            )
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config

    def build(self, input_shape):
        feature_size = input_shape[-1]
        self.position_embeddings = self.add_weight(
            name="embeddings",
            shape=[self.sequence_length, feature_size],
            initializer=self.initializer,
            trainable=True,
        )

        super().build(input_shape)

    def call(self, inputs, start_index=0):
        shape = keras.ops.shape(inputs)
        feature_length = shape[-1]
        sequence_length = shape[-2]
        # trim to match the length of the input sequence, which might be less
        # than the sequence_length of the layer.
        position_embeddings = keras.ops.convert_to_tensor(
            self.position_embeddings
        )
        position_embeddings = keras.ops.slice(
            position_embeddings,
            (start_index, 0),
            (sequence_length, feature_length),
        )
        return keras.ops.broadcast_to(position_embeddings, shape)

    def compute_output_shape(self, input_shape):
        return input_shape


"""
## Sequence Pooling
"""


class SequencePooling(layers.Layer):
    def __init__(self):
        super().__init__()
        self.attention = layers.Dense(1)

    def call(self, x):
        attention_weights = keras.ops.softmax(self.attention(x), axis=1)
        attention_weights = keras.ops.transpose(
            attention_weights, axes=(0, 2, 1)
        )
        weighted_representation = keras.ops.matmul(attention_weights, x)
        return keras.ops.squeeze(weighted_representation, -2)


"""
## Stochastic depth for regularization
"""


# Referred from: github.com:rwightman/pytorch-image-models.
class StochasticDepth(layers.Layer):
    def __init__(self, drop_prop, **kwargs):
        super().__init__(**kwargs)
        self.drop_prob = drop_prop
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, x, training=None):
        if training:
            keep_prob = 1 - self.drop_prob
            shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
            random_tensor = keep_prob + keras.random.uniform(
                shape, 0, 1, seed=self.seed_generator
            )
            random_tensor = keras.ops.floor(random_tensor)
            return (x / keep_prob) * random_tensor
        return x


"""
## MLP for the Transformers encoder
"""


def mlp(x, hidden_units, dropout_rate):
    for units in hidden_units:
        x = layers.Dense(units, activation=keras.ops.gelu)(x)
        x = layers.Dropout(dropout_rate)(x)
    return x


"""
## Data augmentation
"""

# Note the rescaling layer. These layers have pre-defined inference behavior.
data_augmentation = keras.Sequential(
    [
        layers.Rescaling(scale=1.0 / 255),
        layers.RandomCrop(image_size, image_size),
        layers.RandomFlip("horizontal"),
    ],
    name="data_augmentation",
)

"""
## The final CCT model
"""

built = {}


def create_cct_model(
    image_size=image_size,
    input_shape=input_shape,
    num_heads=num_heads,
    projection_dim=projection_dim,
    transformer_units=transformer_units,
):
    inputs = layers.Input(input_shape)

    # Augment data.
    augmented = data_augmentation(inputs)

    # Encode patches.
    cct_tokenizer = CCTTokenizer()
    encoded_patches = cct_tokenizer(augmented)
    built["tokenizer"] = cct_tokenizer
    built["symbolic_sequence"] = list(encoded_patches.shape)

    # Apply positional embedding.
    if positional_emb:
        sequence_length, _ = cct_tokenizer.positional_embedding(image_size)
        built["dummy_sequence_length"] = int(sequence_length)
        encoded_patches += PositionEmbedding(sequence_length=sequence_length)(
            encoded_patches
        )

    # Calculate Stochastic Depth probabilities.
    dpr = [x for x in np.linspace(0, stochastic_depth_rate, transformer_layers)]
    built["dpr"] = [float(x) for x in dpr]

    # Create multiple layers of the Transformer block.
    for i in range(transformer_layers):
        # Layer normalization 1.
        x1 = layers.LayerNormalization(epsilon=1e-5)(encoded_patches)

        # Create a multi-head attention layer.
        attention_output = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=projection_dim, dropout=0.1
        )(x1, x1)

        # Skip connection 1.
        attention_output = StochasticDepth(dpr[i])(attention_output)
        x2 = layers.Add()([attention_output, encoded_patches])

        # Layer normalization 2.
        x3 = layers.LayerNormalization(epsilon=1e-5)(x2)

        # MLP.
        x3 = mlp(x3, hidden_units=transformer_units, dropout_rate=0.1)

        # Skip connection 2.
        x3 = StochasticDepth(dpr[i])(x3)
        encoded_patches = layers.Add()([x3, x2])

    # Apply sequence pooling.
    representation = layers.LayerNormalization(epsilon=1e-5)(encoded_patches)
    weighted_representation = SequencePooling()(representation)
    built["pooled_shape"] = list(weighted_representation.shape)

    # Classify outputs.
    logits = layers.Dense(num_classes)(weighted_representation)
    # Create the Keras model.
    model = keras.Model(inputs=inputs, outputs=logits)
    return model


"""
## Model training and evaluation
"""


def run_experiment(model):
    optimizer = keras.optimizers.AdamW(learning_rate=0.001, weight_decay=0.0001)

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=0.1
        ),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(5, name="top-5-accuracy"),
        ],
    )

    checkpoint_filepath = os.path.join(tempfile.mkdtemp(), "checkpoint.weights.h5")
    checkpoint_callback = keras.callbacks.ModelCheckpoint(
        checkpoint_filepath,
        monitor="val_accuracy",
        save_best_only=True,
        save_weights_only=True,
    )

    history = model.fit(
        x=x_train,
        y=y_train,
        batch_size=batch_size,
        epochs=num_epochs,
        validation_split=0.1,
        callbacks=[checkpoint_callback],
        verbose=0,
    )

    model.load_weights(checkpoint_filepath)
    test_loss, accuracy, top_5_accuracy = model.evaluate(x_test, y_test, verbose=0)

    return history, test_loss, accuracy, top_5_accuracy, checkpoint_filepath


cct_model = create_cct_model()
history, test_loss, accuracy, top_5_accuracy, checkpoint_filepath = run_experiment(cct_model)
split_at = int(math.floor(len(x_train) * (1.0 - 0.1)))  # validation_split holds out the last 10%
_, val_accuracy_reloaded, _ = cct_model.evaluate(x_train[split_at:], y_train[split_at:], verbose=0)
best_val_accuracy = max(history.history["val_accuracy"])
loss = history.history["loss"]

"""
## The pieces on fixed inputs
"""

# StochasticDepth drops whole samples when training, and is the identity otherwise.
sd = StochasticDepth(0.5)
ones = np.ones((200, 4, 3), "float32")
dropped = keras.ops.convert_to_numpy(sd(ones, training=True))
row_values = dropped.reshape(200, -1)
rows_kept_or_zeroed = bool(np.all((row_values == 0).all(axis=1) | np.isclose(row_values, 2.0).all(axis=1)))
kept_fraction = float(np.isclose(row_values[:, 0], 2.0).mean())
identity_in_inference = bool(np.array_equal(keras.ops.convert_to_numpy(sd(ones, training=False)), ones))

# SequencePooling: a softmax over the sequence of Dense(1) scores weights the tokens.
x_seq = np.linspace(-1.0, 1.0, 2 * 5 * 4, dtype="float32").reshape(2, 5, 4)
pool = SequencePooling()
pool(x_seq)
w_att = np.array([[0.5], [-1.0], [0.25], [2.0]], "float32")
b_att = np.array([0.1], "float32")
pool.attention.set_weights([w_att, b_att])
pooled = keras.ops.convert_to_numpy(pool(x_seq))
scores = x_seq @ w_att + b_att
weights = np.exp(scores - scores.max(axis=1, keepdims=True))
weights /= weights.sum(axis=1, keepdims=True)
pooled_numpy = (weights * x_seq).sum(axis=1)

# Label-smoothed crossentropy from logits on fixed values.
logits_fixed = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -0.5]], "float32")
onehot_fixed = np.array([[1, 0, 0, 0], [0, 0, 0, 1]], "float32")
xent = float(keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(onehot_fixed, logits_fixed))
smoothed = onehot_fixed * 0.9 + 0.1 / 4
log_probs = logits_fixed - np.log(np.exp(logits_fixed).sum(axis=1, keepdims=True))
xent_numpy = float(-(smoothed * log_probs).sum(axis=1).mean())

# The positional embedding layer broadcasts its (trimmed) table over the batch.
pe = PositionEmbedding(sequence_length=16)
pe_out = pe(np.zeros((3, 10, 6), "float32"))
pe_table = keras.ops.convert_to_numpy(pe.position_embeddings)

print("RESULT " + json.dumps({
    "figures": {"params": int(cct_model.count_params()),
                "layer_classes": [layer.__class__.__name__ for layer in cct_model.layers],
                "tokenizer_layers": [layer.__class__.__name__ for layer in built["tokenizer"].conv_model.layers],
                "symbolic_sequence": built["symbolic_sequence"],
                "dummy_sequence_length": built["dummy_sequence_length"], "dpr": built["dpr"],
                "pooled_shape": built["pooled_shape"], "output_shape": list(cct_model.output_shape),
                "history_keys": sorted(history.history),
                "sequence_pooling_fixed": [round(float(v), 5) for v in pooled.ravel()],
                "label_smoothed_xent_fixed_logits": round(xent, 5),
                "position_embedding_shapes": [list(pe_out.shape), list(pe_table.shape)],
                "test_loss": round(float(test_loss), 4), "final_train_loss": round(loss[-1], 4)},
    "checks": {"test_accuracy_at_least_0.6": accuracy >= 0.6,
               "top5_at_least_accuracy": top_5_accuracy >= accuracy,
               "train_loss_falls_by_a_third": loss[-1] <= loss[0] * 2 / 3,
               "checkpoint_written": os.path.exists(checkpoint_filepath),
               "reloaded_weights_score_best_val_accuracy": abs(val_accuracy_reloaded - best_val_accuracy) < 1e-6,
               "dummy_sequence_length_matches": built["dummy_sequence_length"] == built["symbolic_sequence"][1] == 16,
               "stochastic_depth_keeps_or_zeroes_samples": rows_kept_or_zeroed,
               "stochastic_depth_keeps_about_half": 0.3 <= kept_fraction <= 0.7,
               "stochastic_depth_identity_in_inference": identity_in_inference,
               "sequence_pooling_matches_numpy": bool(np.allclose(pooled, pooled_numpy, atol=1e-5)),
               "label_smoothing_matches_numpy": abs(xent - xent_numpy) < 1e-5,
               "position_embedding_broadcasts_trimmed_table": bool(
                   np.allclose(keras.ops.convert_to_numpy(pe_out), np.broadcast_to(pe_table[:10], (3, 10, 6))))},
    "info": {"test_accuracy": round(float(accuracy), 4), "test_top5_accuracy": round(float(top_5_accuracy), 4),
             "loss": [round(v, 4) for v in loss],
             "val_accuracy": [round(v, 4) for v in history.history["val_accuracy"]],
             "val_accuracy_reloaded": round(float(val_accuracy_reloaded), 4),
             "stochastic_depth_kept_fraction": kept_fraction},
}))

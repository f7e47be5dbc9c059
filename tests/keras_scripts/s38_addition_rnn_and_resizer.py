import keras
# Scenario: two short examples. (1) sequence to sequence number addition (examples/nlp/addition_rnn,
# Keras 3 version), with 2-digit numbers and 3000 questions (the example: 3 digits, 50000): the
# example's CharacterTable (one-hot encode, decode with and without argmax), questions padded with
# spaces and reversed, one-hot np.bool arrays fed straight to fit, a Sequential built with
# layers.LSTM(128, input_shape=(MAXLEN, len(chars))), RepeatVector(DIGITS + 1),
# LSTM(128, return_sequences=True) and Dense(len(chars), activation="softmax") applied to the whole
# sequence (no TimeDistributed), compiled with "categorical_crossentropy", "adam" and ["accuracy"],
# trained one epoch per iteration with validation_data and decoded guesses on random validation
# rows after each. (2) learning to resize (examples/vision/learnable_resizer), on 32x32 synthetic
# images of horizontal or vertical stripes resized to 16x16 (the example: cats and dogs, 300 to
# 150): the learnable resizer (Input(shape=[None, None, 3]), layers.Resizing(*TARGET_SIZE,
# interpolation="bilinear") for the naive resize and the bottleneck, conv_block with its shared
# default LeakyReLU(0.2) instance, Conv2D/BatchNormalization residual blocks joined with Add) as a
# nested model between Rescaling(1/255) and a small CNN backbone (in place of DenseNet121), compiled
# with CategoricalCrossentropy(label_smoothing=0.1), "sgd" and ["accuracy"].
# Thresholds: (1) the per-character validation accuracy beats the per-position majority character
# by 0.05 and the loss falls by a third; the CharacterTable round-trips; (2) the training loss falls
# and the training accuracy reaches 0.8; the resizer accepts any input size and gives 16x16; with
# its last Conv2D zeroed the resizer returns exactly the bilinear naive resize; bilinear Resizing of
# a constant image stays constant.
import json

import numpy as np
from keras import layers
from keras import ops

keras.utils.set_random_seed(38)

# ====================================================================================
# (1) Sequence to sequence learning for performing number addition
# ====================================================================================

# Parameters for the model and dataset.
TRAINING_SIZE = 3000
DIGITS = 2
REVERSE = True

# Maximum length of input is 'int + int' (e.g., '345+678'). Maximum length of
# int is DIGITS.
MAXLEN = DIGITS + 1 + DIGITS


class CharacterTable:
    """Given a set of characters:
    + Encode them to a one-hot integer representation
    + Decode the one-hot or integer representation to their character output
    + Decode a vector of probabilities to their character output
    """

    def __init__(self, chars):
        """Initialize character table.
        # Arguments
            chars: Characters that can appear in the input.
        """
        self.chars = sorted(set(chars))
        self.char_indices = dict((c, i) for i, c in enumerate(self.chars))
        self.indices_char = dict((i, c) for i, c in enumerate(self.chars))

    def encode(self, C, num_rows):
        """One-hot encode given string C.
        # Arguments
            C: string, to be encoded.
            num_rows: Number of rows in the returned one-hot encoding. This is
                used to keep the # of rows for each data the same.
        """
        x = np.zeros((num_rows, len(self.chars)))
        for i, c in enumerate(C):
            x[i, self.char_indices[c]] = 1
        return x

    def decode(self, x, calc_argmax=True):
        """Decode the given vector or 2D array to their character output.
        # Arguments
            x: A vector or a 2D array of probabilities or one-hot representations;
                or a vector of character indices (used with `calc_argmax=False`).
            calc_argmax: Whether to find the character index with maximum
                probability, defaults to `True`.
        """
        if calc_argmax:
            x = x.argmax(axis=-1)
        return "".join(self.indices_char[x] for x in x)


# All the numbers, plus sign and space for padding.
chars = "0123456789+ "
ctable = CharacterTable(chars)

questions = []
expected = []
seen = set()
while len(questions) < TRAINING_SIZE:
    f = lambda: int(
        "".join(
            np.random.choice(list("0123456789"))
            for i in range(np.random.randint(1, DIGITS + 1))
        )
    )
    a, b = f(), f()
    # Skip any addition questions we've already seen
    # Also skip any such that x+Y == Y+x (hence the sorting).
    key = tuple(sorted((a, b)))
    if key in seen:
        continue
    seen.add(key)
    # Pad the data with spaces such that it is always MAXLEN.
    q = "{}+{}".format(a, b)
    query = q + " " * (MAXLEN - len(q))
    ans = str(a + b)
    # Answers can be of maximum size DIGITS + 1.
    ans += " " * (DIGITS + 1 - len(ans))
    if REVERSE:
        # Reverse the query, e.g., '12+345  ' becomes '  543+21'. (Note the
        # space used for padding.)
        query = query[::-1]
    questions.append(query)
    expected.append(ans)

x = np.zeros((len(questions), MAXLEN, len(chars)), dtype=np.bool)
y = np.zeros((len(questions), DIGITS + 1, len(chars)), dtype=np.bool)
for i, sentence in enumerate(questions):
    x[i] = ctable.encode(sentence, MAXLEN)
for i, sentence in enumerate(expected):
    y[i] = ctable.encode(sentence, DIGITS + 1)

# Shuffle (x, y) in unison as the later parts of x will almost all be larger
# digits.
indices = np.arange(len(y))
np.random.shuffle(indices)
x = x[indices]
y = y[indices]

# Explicitly set apart 10% for validation data that we never train over.
split_at = len(x) - len(x) // 10
(x_train, x_val) = x[:split_at], x[split_at:]
(y_train, y_val) = y[:split_at], y[split_at:]

num_layers = 1  # Try to add more LSTM layers!

model = keras.Sequential()
# "Encode" the input sequence using a LSTM, producing an output of size 128.
model.add(layers.LSTM(128, input_shape=(MAXLEN, len(chars))))
# As the decoder RNN's input, repeatedly provide with the last output of
# RNN for each time step. Repeat 'DIGITS + 1' times as that's the maximum
# length of output, e.g., when DIGITS=3, max output is 999+999=1998.
model.add(layers.RepeatVector(DIGITS + 1))
# The decoder RNN could be multiple layers stacked or a single layer.
for _ in range(num_layers):
    model.add(layers.LSTM(128, return_sequences=True))

# Apply a dense layer to the every temporal slice of an input. For each of step
# of the output sequence, decide which character should be chosen.
model.add(layers.Dense(len(chars), activation="softmax"))
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

epochs = 13
batch_size = 32

losses, val_accuracies, guesses_right, samples = [], [], [], []
for epoch in range(1, epochs):
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=1,
        validation_data=(x_val, y_val),
        verbose=0,
    )
    losses.append(history.history["loss"][0])
    val_accuracies.append(history.history["val_accuracy"][0])
    # Select 10 samples from the validation set at random so we can visualize
    # errors.
    right = 0
    for i in range(10):
        ind = np.random.randint(0, len(x_val))
        rowx, rowy = x_val[np.array([ind])], y_val[np.array([ind])]
        preds = np.argmax(model.predict(rowx, verbose=0), axis=-1)
        q = ctable.decode(rowx[0])
        correct = ctable.decode(rowy[0])
        guess = ctable.decode(preds[0], calc_argmax=False)
        right += correct == guess
        if i == 0:
            samples.append("Q " + (q[::-1] if REVERSE else q) + " T " + correct + " G " + guess)
    guesses_right.append(right)

addition_params = int(model.count_params())
addition_output_shape = list(model.output_shape)
addition_layer_names = [layer.__class__.__name__ for layer in model.layers]
val_probs = model.predict(x_val, verbose=0)
# the per-position majority character of the training answers, as a baseline
majority = y_train.sum(axis=0).argmax(axis=-1)
majority_accuracy = float((y_val.argmax(axis=-1) == majority).mean())
exact_match_rate = float(np.mean([ctable.decode(p) == ctable.decode(t) for p, t in zip(val_probs, y_val)]))
roundtrip = ctable.decode(ctable.encode("  21+43", MAXLEN + 2)) == "  21+43" and \
    ctable.decode(np.array([ctable.char_indices[c] for c in "64 "]), calc_argmax=False) == "64 "

# ====================================================================================
# (2) Learning to resize
# ====================================================================================

INP_SIZE = (32, 32)
TARGET_SIZE = (16, 16)
INTERPOLATION = "bilinear"
BATCH_SIZE = 32
EPOCHS = 4

rng = np.random.default_rng(0)


def make_stripes(n):
    """Class 0: horizontal stripes, class 1: vertical stripes (4 px wide, random phase), 0..255."""
    labels = rng.integers(0, 2, n)
    rows, cols = np.mgrid[0:INP_SIZE[0], 0:INP_SIZE[1]]
    images = np.zeros((n,) + INP_SIZE + (3,), "float32")
    for i, label in enumerate(labels):
        coord = rows if label == 0 else cols
        stripes = ((coord + rng.integers(0, 8)) // 4) % 2
        colour = rng.uniform(120, 255, 3)
        images[i] = stripes[..., None] * colour
    images += rng.normal(0, 30, images.shape)
    return np.clip(images, 0, 255).astype("float32"), np.eye(2, dtype="float32")[labels]


train_x, train_y = make_stripes(192)
val_x, val_y = make_stripes(64)


def conv_block(x, filters, kernel_size, strides, activation=layers.LeakyReLU(0.2)):
    x = layers.Conv2D(filters, kernel_size, strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    if activation:
        x = activation(x)
    return x


def res_block(x):
    inputs = x
    x = conv_block(x, 16, 3, 1)
    x = conv_block(x, 16, 3, 1, activation=None)
    return layers.Add()([inputs, x])


# Note: User can change num_res_blocks to >1 also if needed
def get_learnable_resizer(filters=16, num_res_blocks=1, interpolation=INTERPOLATION):
    inputs = layers.Input(shape=[None, None, 3])

    # First, perform naive resizing.
    naive_resize = layers.Resizing(*TARGET_SIZE, interpolation=interpolation)(inputs)

    # First convolution block without batch normalization.
    x = layers.Conv2D(filters=filters, kernel_size=7, strides=1, padding="same")(inputs)
    x = layers.LeakyReLU(0.2)(x)

    # Second convolution block with batch normalization.
    x = layers.Conv2D(filters=filters, kernel_size=1, strides=1, padding="same")(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.BatchNormalization()(x)

    # Intermediate resizing as a bottleneck.
    bottleneck = layers.Resizing(*TARGET_SIZE, interpolation=interpolation)(x)

    # Residual passes.
    # First res_block will get bottleneck output as input
    x = res_block(bottleneck)
    # Remaining res_blocks will get previous res_block output as input
    for _ in range(num_res_blocks - 1):
        x = res_block(x)

    # Projection.
    x = layers.Conv2D(
        filters=filters, kernel_size=3, strides=1, padding="same", use_bias=False
    )(x)
    x = layers.BatchNormalization()(x)

    # Skip connection.
    x = layers.Add()([bottleneck, x])

    # Final resized image.
    x = layers.Conv2D(filters=3, kernel_size=7, strides=1, padding="same")(x)
    final_resize = layers.Add()([naive_resize, x])

    return keras.Model(inputs, final_resize, name="learnable_resizer")


learnable_resizer = get_learnable_resizer()
sample_images = val_x[:6]
resized_before = [learnable_resizer(image[None, ...] / 255) for image in sample_images]
odd_size = learnable_resizer(rng.uniform(0, 1, (1, 40, 24, 3)).astype("float32"))


def get_model():
    backbone = keras.Sequential(
        [
            layers.Input((TARGET_SIZE[0], TARGET_SIZE[1], 3)),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2, activation="softmax"),
        ],
        name="backbone",
    )
    backbone.trainable = True

    inputs = layers.Input((INP_SIZE[0], INP_SIZE[1], 3))
    x = layers.Rescaling(scale=1.0 / 255)(inputs)
    x = learnable_resizer(x)
    outputs = backbone(x)

    return keras.Model(inputs, outputs)


resizer_model = get_model()
resizer_model.compile(
    loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
    optimizer="sgd",
    metrics=["accuracy"],
)
resizer_history = resizer_model.fit(train_x, train_y, batch_size=BATCH_SIZE,
                                    validation_data=(val_x, val_y), epochs=EPOCHS, verbose=0)
resized_after = [learnable_resizer(image[None, ...] / 255) for image in sample_images]
resizer_changed = float(np.mean([np.abs(ops.convert_to_numpy(a) - ops.convert_to_numpy(b)).mean()
                                 for a, b in zip(resized_before, resized_after)]))

# a fresh resizer whose final Conv2D is zeroed is the naive bilinear resize
fresh = get_learnable_resizer()
last_conv = [layer for layer in fresh.layers if isinstance(layer, layers.Conv2D)][-1]
last_conv.kernel.assign(np.zeros(last_conv.kernel.shape, "float32"))
last_conv.bias.assign(np.zeros(last_conv.bias.shape, "float32"))
probe = rng.uniform(0, 1, (2, 32, 32, 3)).astype("float32")
zeroed_out = ops.convert_to_numpy(fresh(probe, training=False))
naive_out = ops.convert_to_numpy(layers.Resizing(*TARGET_SIZE, interpolation=INTERPOLATION)(probe))

ramp = np.arange(64, dtype="float32").reshape(1, 8, 8, 1)
ramp_resized = ops.convert_to_numpy(layers.Resizing(4, 4, interpolation="bilinear")(ramp))
constant_resized = ops.convert_to_numpy(layers.Resizing(5, 7)(np.full((1, 9, 13, 2), 3.0, "float32")))

r_loss = resizer_history.history["loss"]
r_acc = resizer_history.history["accuracy"]
print("RESULT " + json.dumps({
    "figures": {"addition_params": addition_params, "addition_output_shape": addition_output_shape,
                "addition_layers": addition_layer_names, "x_dtype": str(x.dtype), "x_shape": list(x.shape),
                "y_shape": list(y.shape), "first_question": questions[0], "first_expected": expected[0],
                "addition_final_loss": round(losses[-1], 4),
                "resizer_params": int(learnable_resizer.count_params()),
                "resizer_layers": len(learnable_resizer.layers),
                "resizer_model_params": int(resizer_model.count_params()),
                "resizer_output_shape": list(ops.convert_to_numpy(resized_before[0]).shape),
                "odd_size_output_shape": list(ops.convert_to_numpy(odd_size).shape),
                "ramp_resized": np.round(ramp_resized[0, :, :, 0], 4).tolist(),
                "resizer_history_keys": sorted(resizer_history.history),
                "resizer_final_loss": round(r_loss[-1], 4)},
    "checks": {"addition_val_accuracy_beats_majority": val_accuracies[-1] >= majority_accuracy + 0.05,
               "addition_loss_falls_by_a_third": losses[-1] <= losses[0] * 2 / 3,
               "character_table_round_trips": bool(roundtrip),
               "resizer_loss_falls": r_loss[-1] < r_loss[0],
               "resizer_train_accuracy_0.8": r_acc[-1] >= 0.8,
               "resizer_any_input_size": list(ops.convert_to_numpy(odd_size).shape) == [1, 16, 16, 3],
               "zeroed_resizer_is_naive_resize": bool(np.allclose(zeroed_out, naive_out, atol=1e-5)),
               "constant_resize_constant": bool(np.allclose(constant_resized, 3.0, atol=1e-5))
               and constant_resized.shape == (1, 5, 7, 2),
               "resizer_trained": resizer_changed > 0},
    "info": {"addition_loss": [round(v, 4) for v in losses],
             "addition_val_accuracy": [round(v, 4) for v in val_accuracies],
             "guesses_right_of_10": guesses_right, "samples": samples[-3:],
             "majority_accuracy": round(majority_accuracy, 4), "exact_match_rate": round(exact_match_rate, 4),
             "resizer_loss": [round(v, 4) for v in r_loss], "resizer_accuracy": [round(v, 4) for v in r_acc],
             "resizer_val_accuracy": [round(v, 4) for v in resizer_history.history["val_accuracy"]],
             "resizer_changed": round(resizer_changed, 5)},
}))

import keras
# Scenario: working with preprocessing layers (guides/preprocessing_layers), on the guide's own toy
# data and small synthetic sets, numpy arrays and Python lists in place of tf.data: adapt() on a
# Normalization (the guide's 3x3 array) and on a default TextVectorization (a list of Greek lines);
# StringLookup with a given vocabulary, with num_oov_indices=2 and adapted with
# output_mode="one_hot" on unseen values; IntegerLookup adapted with output_mode="one_hot", with
# num_oov_indices=2 and an invert=True round trip; Discretization(num_bins=4) adapted and with
# bin_boundaries; Hashing(num_bins=64, salt=1337) into CategoryEncoding(multi_hot), Hashing's
# documented FarmHash and SipHash bins, CategoryEncoding one_hot / multi_hot / count; a
# RandomFlip / RandomRotation / RandomZoom augmentation Sequential inside a Rescaling convnet;
# an adapted Normalization inside a softmax classifier; and TextVectorization in "int" (Embedding,
# GRU), "multi_hot" with ngrams=2 and "tf_idf" with ngrams=2 (Dense) modes adapted on the guide's
# four lines, the model trained on text vectorized beforehand (the guide's "data pipeline" option),
# then the guide's end-to-end inference model on keras.Input(shape=(1,), dtype="string") called on
# raw strings.
# What Keras on JAX cannot run as the guide does: a Functional model fed string tensors (JAX has no
# string dtype, keras-team/keras#18410), so the end-to-end model is built as the guide builds it,
# and called on raw strings inside a try (whether it ran goes to info; when it runs its output must
# equal the pipeline's); raw strings are predicted by the adapted vectorizer then the trained
# model; and StringLookup(invert=True) returns strings, which JAX cannot hold, so the string
# inverse is read from get_vocabulary() and the invert=True round trip uses IntegerLookup.
# StringLookup, IntegerLookup, TextVectorization and Hashing need TensorFlow installed with Keras
# (see README); the computing backend stays JAX.
# Thresholds: normalized features have mean 0 and std 1; lookups give the guide's and the Keras
# docstrings' indices (OOV at 0, num_oov_indices shifting the vocabulary by 2, floormod OOV for
# integers); the IntegerLookup round trip returns the values with -1 for OOV; the adapted
# Discretization puts 15-35% of the values in each bin; Hashing gives the documented bins; the
# augmentation changes images only in training; the image classifiers and the three text models
# learn (accuracy at least 0.8, losses fall); tf-idf weights the out-of-vocabulary column and
# the known tokens positively.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(7)
rng = np.random.default_rng(0)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def as_text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


figures, checks, info = {}, {}, {}

# ---- the adapt() method --------------------------------------------------------------------------
data = np.array(
    [
        [0.1, 0.2, 0.3],
        [0.8, 0.9, 1.0],
        [1.5, 1.6, 1.7],
    ]
)
layer = layers.Normalization()
layer.adapt(data)
normalized_data = to_numpy(layer(data))
figures["normalization_mean"] = [round(float(v), 4) for v in to_numpy(layer.mean).ravel()]
figures["normalized_shape"] = list(normalized_data.shape)
checks["normalized_mean_0_std_1"] = bool(abs(normalized_data.mean()) < 1e-4 and abs(normalized_data.std() - 1) < 1e-3)

data = [
    "ξεῖν᾽, ἦ τοι μὲν ὄνειροι ἀμήχανοι ἀκριτόμυθοι",
    "γίγνοντ᾽, οὐδέ τι πάντα τελείεται ἀνθρώποισι.",
    "δοιαὶ γάρ τε πύλαι ἀμενηνῶν εἰσὶν ὀνείρων:",
    "αἱ μὲν γὰρ κεράεσσι τετεύχαται, αἱ δ᾽ ἐλέφαντι:",
    "τῶν οἳ μέν κ᾽ ἔλθωσι διὰ πριστοῦ ἐλέφαντος,",
    "οἵ ῥ᾽ ἐλεφαίρονται, ἔπε᾽ ἀκράαντα φέροντες:",
    "οἱ δὲ διὰ ξεστῶν κεράων ἔλθωσι θύραζε,",
    "οἵ ῥ᾽ ἔτυμα κραίνουσι, βροτῶν ὅτε κέν τις ἴδηται.",
]
layer = layers.TextVectorization()
layer.adapt(data)
vectorized_text = to_numpy(layer(data))
greek_vocabulary = [as_text(v) for v in layer.get_vocabulary()]
figures["greek_vocabulary_size"] = int(layer.vocabulary_size())
figures["greek_vocabulary_head"] = greek_vocabulary[:8]
figures["greek_vectorized"] = vectorized_text.astype(int).tolist()
checks["greek_vocabulary_special_tokens"] = greek_vocabulary[:2] == ["", "[UNK]"]

# ---- StringLookup ---------------------------------------------------------------------------------
vocab = ["a", "b", "c", "d"]
data = np.array([["a", "c", "d"], ["d", "z", "b"]])
layer = layers.StringLookup(vocabulary=vocab)
vectorized_data = to_numpy(layer(data))
figures["string_lookup"] = vectorized_data.astype(int).tolist()
checks["string_lookup_guide_indices"] = vectorized_data.tolist() == [[1, 3, 4], [4, 0, 2]]
# the inverse mapping: a StringLookup(invert=True) returns strings, which JAX cannot hold, so index
# the layer's vocabulary (its index i is the token that maps to i)
inverse_vocabulary = np.array([as_text(v) for v in layer.get_vocabulary()])
recovered = inverse_vocabulary[vectorized_data]
checks["string_lookup_inverse_round_trip"] = recovered.tolist() == [["a", "c", "d"], ["d", "[UNK]", "b"]]

layer = layers.StringLookup(vocabulary=vocab, num_oov_indices=2)
two_oov = to_numpy(layer(data)).astype(int)
figures["string_lookup_two_oov"] = two_oov.tolist()
figures["string_lookup_two_oov_vocabulary_size"] = int(layer.vocabulary_size())
checks["string_lookup_two_oov_shift"] = bool(two_oov[0].tolist() == [2, 4, 5] and two_oov[1, 0] == 5
                                             and two_oov[1, 2] == 3 and two_oov[1, 1] in (0, 1))

data = np.array([["a"], ["b"], ["c"], ["b"], ["c"], ["a"]])
lookup = layers.StringLookup(output_mode="one_hot")
lookup.adapt(data)
test_data = np.array([["a"], ["b"], ["c"], ["d"], ["e"], [""]])
encoded_data = to_numpy(lookup(test_data))
figures["string_one_hot_vocabulary"] = [as_text(v) for v in lookup.get_vocabulary()]
figures["string_one_hot"] = encoded_data.astype(int).tolist()
checks["string_one_hot_unknowns_at_0"] = bool(encoded_data.shape == (6, 4) and np.all(encoded_data[3:, 0] == 1)
                                              and np.all(encoded_data.sum(-1) == 1))

# ---- IntegerLookup ----------------------------------------------------------------------------------
data = np.array([[10], [20], [20], [10], [30], [0]])
lookup = layers.IntegerLookup(output_mode="one_hot")
lookup.adapt(data)
test_data = np.array([[10], [10], [20], [50], [60], [0]])
encoded_data = to_numpy(lookup(test_data))
figures["integer_one_hot_vocabulary"] = [int(v) for v in lookup.get_vocabulary()]
figures["integer_one_hot"] = encoded_data.astype(int).tolist()
checks["integer_one_hot_unknowns_at_0"] = bool(encoded_data.shape == (6, 5) and np.all(encoded_data[3:5, 0] == 1)
                                               and encoded_data[5, 0] == 0)

vocab = [12, 36, 1138, 42]
data = np.array([[12, 1138, 42], [42, 1000, 36]])
two_oov = to_numpy(layers.IntegerLookup(vocabulary=vocab, num_oov_indices=2)(data)).astype(int)
figures["integer_lookup_two_oov"] = two_oov.tolist()
checks["integer_lookup_two_oov_floormod"] = two_oov.tolist() == [[2, 4, 5], [5, 0, 3]]
indices = layers.IntegerLookup(vocabulary=vocab)(data)
inverse = layers.IntegerLookup(vocabulary=vocab, invert=True)
round_trip = to_numpy(inverse(indices)).astype(int)
figures["integer_lookup_round_trip"] = round_trip.tolist()
checks["integer_lookup_invert_round_trip"] = round_trip.tolist() == [[12, 1138, 42], [42, -1, 36]]

# ---- Discretization ---------------------------------------------------------------------------------
values = rng.normal(50, 10, (400, 1)).round(2)
discretizer = layers.Discretization(num_bins=4)
discretizer.adapt(values)
bins = to_numpy(discretizer(values))
figures["discretization_boundaries"] = [round(float(b), 3) for b in discretizer.bin_boundaries]
bin_shares = [float(np.mean(bins == b)) for b in range(4)]
checks["discretization_bins_15_to_35_percent"] = all(0.15 <= s <= 0.35 for s in bin_shares)
fixed = layers.Discretization(bin_boundaries=[0.0, 1.0, 2.0])
fixed_bins = to_numpy(fixed(np.array([[-1.5, 1.0, 3.4, 0.5], [0.0, 3.0, 1.3, 0.0]]))).astype(int)
figures["discretization_fixed"] = fixed_bins.tolist()
checks["discretization_fixed_docstring"] = fixed_bins.tolist() == [[0, 2, 3, 1], [1, 3, 2, 1]]

# ---- Hashing and CategoryEncoding -------------------------------------------------------------------
# Sample data: 1,000 random integers with values between 0 and 100,000
data = rng.integers(0, 100000, size=(1000, 1))
# Use the Hashing layer to hash the values to the range [0, 64]
hasher = layers.Hashing(num_bins=64, salt=1337)
# Use the CategoryEncoding layer to multi-hot encode the hashed values
encoder = layers.CategoryEncoding(num_tokens=64, output_mode="multi_hot")
hashed = to_numpy(hasher(data)).astype(int)
encoded_data = to_numpy(encoder(hashed))
figures["hashed_multi_hot_shape"] = list(encoded_data.shape)
figures["hashed_first_values"] = hashed[:8, 0].tolist()
checks["hashing_fills_bins"] = bool(hashed.min() >= 0 and hashed.max() < 64 and len(np.unique(hashed)) >= 56)
inp = [["A"], ["B"], ["C"], ["D"], ["E"]]
farm = to_numpy(layers.Hashing(num_bins=3)(np.array(inp))).astype(int).ravel().tolist()
sip = to_numpy(layers.Hashing(num_bins=3, salt=[133, 137])(np.array(inp))).astype(int).ravel().tolist()
figures["hashing_docstring_bins"] = [farm, sip]
checks["hashing_docstring_bins"] = farm == [1, 0, 1, 1, 2] and sip == [1, 2, 1, 0, 2]

one_hot = to_numpy(layers.CategoryEncoding(num_tokens=4, output_mode="one_hot")(np.array([3, 2, 0, 1])))
multi_hot = to_numpy(layers.CategoryEncoding(num_tokens=4, output_mode="multi_hot")(
    np.array([[0, 1], [0, 0], [1, 2], [3, 1]])))
count = to_numpy(layers.CategoryEncoding(num_tokens=4, output_mode="count")(
    np.array([[0, 1], [0, 0], [1, 2], [3, 1]]), count_weights=np.array([[0.1, 0.2], [0.1, 0.1], [0.2, 0.3],
                                                                       [0.4, 0.2]])))
figures["category_encoding"] = [one_hot.astype(int).tolist(), multi_hot.astype(int).tolist(),
                                np.round(count.astype("float64"), 4).tolist()]
checks["category_encoding_docstrings"] = bool(
    np.array_equal(one_hot, np.eye(4)[[3, 2, 0, 1]])
    and multi_hot.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]]
    and np.allclose(count, [[0.1, 0.2, 0, 0], [0.2, 0, 0, 0], [0, 0.2, 0.3, 0], [0, 0.2, 0, 0.4]]))

# ---- image data augmentation inside the model -------------------------------------------------------
classes = 4
palette = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [220, 220, 40]], "float32")


def make_images(n):
    labels = rng.integers(0, classes, n)
    images = np.zeros((n, 16, 16, 3), "float32") + 60
    for i, label in enumerate(labels):
        top, left = rng.integers(2, 7, 2)
        images[i, top:top + 8, left:left + 8] = palette[label]
    images += rng.normal(0, 20, images.shape)
    return np.clip(images, 0, 255).astype("float32"), labels


x_train, y_train = make_images(256)
x_test, y_test = make_images(128)
input_shape = x_train.shape[1:]

# Create a data augmentation stage with horizontal flipping, rotations, zooms
data_augmentation = keras.Sequential(
    [
        layers.RandomFlip("horizontal"),
        layers.RandomRotation(0.1),
        layers.RandomZoom(0.1),
    ]
)
inputs = keras.Input(shape=input_shape)
x = data_augmentation(inputs)  # Apply random data augmentation
x = layers.Rescaling(1.0 / 255)(x)  # Rescale inputs
x = layers.Conv2D(8, 3, activation="relu")(x)
x = layers.MaxPooling2D()(x)
x = layers.Conv2D(16, 3, activation="relu")(x)
x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Dense(classes, activation="softmax")(x)
model = keras.Model(inputs, outputs)
model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=32, epochs=6, verbose=0)
image_accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))
augmented_inference = to_numpy(data_augmentation(x_test[:8], training=False))
augmented_training = to_numpy(data_augmentation(x_test[:8], training=True))
figures["augmented_model_params"] = int(model.count_params())
figures["augmentation_layers"] = [type(l).__name__ for l in data_augmentation.layers]
figures["augmented_model_accuracy"] = round(image_accuracy, 3)
info["augmented_model_loss"] = [round(v, 4) for v in history.history["loss"]]
checks["augmented_model_accuracy_at_least_0.8"] = image_accuracy >= 0.8
checks["augmentation_identity_at_inference"] = bool(np.allclose(augmented_inference, x_test[:8], atol=1e-4))
checks["augmentation_changes_training_images"] = not np.allclose(augmented_training, x_test[:8], atol=1.0)
checks["augmented_predictions_deterministic"] = bool(np.allclose(model.predict(x_test[:16], verbose=0),
                                                                 model.predict(x_test[:16], verbose=0), atol=1e-6))

# ---- normalizing numerical features ----------------------------------------------------------------
x_flat = x_train.reshape((len(x_train), -1))
input_shape = x_flat.shape[1:]
# Create a Normalization layer and set its internal state using the training data
normalizer = layers.Normalization()
normalizer.adapt(x_flat)
# Create a model that include the normalization layer
inputs = keras.Input(shape=input_shape)
x = normalizer(inputs)
outputs = layers.Dense(classes, activation="softmax")(x)
model = keras.Model(inputs, outputs)
# Train the model
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
history = model.fit(x_flat, y_train, epochs=3, verbose=0)
flat_accuracy = float(np.mean(np.argmax(model.predict(x_test.reshape((len(x_test), -1)), verbose=0), -1) == y_test))
figures["normalized_classifier_params"] = int(model.count_params())
figures["normalized_classifier_accuracy"] = round(flat_accuracy, 3)
info["normalized_classifier_loss"] = [round(v, 4) for v in history.history["loss"]]
checks["normalized_classifier_loss_falls"] = history.history["loss"][-1] < history.history["loss"][0]
checks["normalized_classifier_accuracy_at_least_0.8"] = flat_accuracy >= 0.8

# ---- text: TextVectorization in int, multi_hot and tf_idf modes ------------------------------------
# Define some text data to adapt the layer
adapt_data = [
    "The Brain is wider than the Sky",
    "For put them side by side",
    "The one the other will contain",
    "With ease and You beside",
]
words = "the brain is wider than sky for put them side by one other will contain with ease and you beside".split()
unknown = "deeper sea if they are held blue to absorb".split()


def make_sentences(n):
    sentences, labels = [], []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        pool = [w for w in words if w != "brain"]
        tokens = list(rng.choice(pool + unknown, int(rng.integers(4, 8))))
        if label:
            tokens.insert(int(rng.integers(0, len(tokens) + 1)), "Brain")
        sentences.append(" ".join(tokens))
        labels.append(label)
    return sentences, np.array(labels, "float32")


train_text, train_labels = make_sentences(256)
test_text, test_labels = make_sentences(64)
demo = ["The Brain is deeper than the sea"]
raw_test = np.array([["The one the other will absorb"], ["For if they are held Blue to Blue"],
                     ["The Brain is deeper than the sea"]])


def text_model(mode, text_vectorizer):
    if mode == "int":
        # Create a simple model
        inputs = keras.Input(shape=(None,), dtype="int64")
        x = layers.Embedding(input_dim=text_vectorizer.vocabulary_size(), output_dim=16)(inputs)
        x = layers.GRU(8)(x)
        outputs = layers.Dense(1)(x)
    else:
        inputs = keras.Input(shape=(text_vectorizer.vocabulary_size(),))
        outputs = layers.Dense(1)(inputs)
    return keras.Model(inputs, outputs)


for mode, kwargs, epochs in (("int", {}, 15), ("multi_hot", {"ngrams": 2}, 15), ("tf_idf", {"ngrams": 2}, 15)):
    # Create a TextVectorization layer and index the vocabulary via `adapt()`
    text_vectorizer = layers.TextVectorization(output_mode=mode, **kwargs)
    text_vectorizer.adapt(adapt_data)
    encoded = to_numpy(text_vectorizer(demo))
    model = text_model(mode, text_vectorizer)
    # Preprocess the string inputs, turning them into int sequences or vectors, as the data pipeline does
    x_train_text = to_numpy(text_vectorizer(np.array(train_text)))
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.01), loss="mse")
    history = model.fit(x_train_text, train_labels, batch_size=32, epochs=epochs, verbose=0)
    # For inference, you can export a model that accepts strings as input. (Keras 3.15 on JAX stops
    # here for multi_hot/tf_idf: its TextVectorization gives a symbolic (None, 1, depth) output for a
    # (None, 1) string input, which the trained model refuses; what happened goes to `info`.)
    try:
        inputs = keras.Input(shape=(1,), dtype="string")
        x = text_vectorizer(inputs)
        outputs = model(x)
        end_to_end_model = keras.Model(inputs, outputs)
        info[f"{mode}_end_to_end_built"] = True
    except Exception as e:  # noqa: BLE001
        end_to_end_model = None
        info[f"{mode}_end_to_end_built"] = f"{type(e).__name__}: {str(e)[:120]}"
    # predictions on raw strings: the adapted vectorizer, then the trained model
    pipeline_test = model.predict(to_numpy(text_vectorizer(np.array(test_text))), verbose=0).ravel()
    pipeline_raw = model.predict(to_numpy(text_vectorizer(raw_test)), verbose=0)
    try:  # the guide's call of the end-to-end model on raw strings (no string tensors on JAX)
        if end_to_end_model is None:
            raise RuntimeError("the end-to-end model could not be built")
        end_to_end_raw = to_numpy(end_to_end_model(raw_test))
        info[f"{mode}_end_to_end_ran_on_strings"] = True
    except Exception as e:  # noqa: BLE001
        end_to_end_raw = None
        info[f"{mode}_end_to_end_ran_on_strings"] = f"{type(e).__name__}: {str(e)[:120]}"
    accuracy = float(np.mean((pipeline_test > 0.5) == (test_labels > 0.5)))
    loss = history.history["loss"]
    figures[f"{mode}_vocabulary_size"] = int(text_vectorizer.vocabulary_size())
    figures[f"{mode}_vocabulary_tail"] = [as_text(v) for v in text_vectorizer.get_vocabulary()[-6:]]
    figures[f"{mode}_encoded_demo"] = (encoded.astype(int).tolist() if mode != "tf_idf"
                                       else np.round(encoded, 4).tolist())
    figures[f"{mode}_model_params"] = int(model.count_params())
    if end_to_end_model is not None:
        info[f"{mode}_end_to_end_input_dtype"] = end_to_end_model.inputs[0].dtype
        info[f"{mode}_end_to_end_output_shape"] = list(end_to_end_model.outputs[0].shape)
    figures[f"{mode}_raw_predictions_shape"] = list(pipeline_raw.shape)
    figures[f"{mode}_final_loss"] = round(loss[-1], 4)
    figures[f"{mode}_test_accuracy"] = round(accuracy, 3)
    info[f"{mode}_loss"] = [round(v, 4) for v in loss]
    info[f"{mode}_raw_predictions"] = [round(float(v), 4) for v in pipeline_raw.ravel()]
    checks[f"{mode}_loss_falls_by_half"] = loss[-1] <= loss[0] / 2
    checks[f"{mode}_test_accuracy_at_least_0.8"] = accuracy >= 0.8
    checks[f"{mode}_raw_brain_sentence_scores_highest"] = bool(np.argmax(pipeline_raw.ravel()) == 2)
    checks[f"{mode}_end_to_end_equals_pipeline_when_it_runs"] = bool(
        end_to_end_raw is None or np.allclose(end_to_end_raw, pipeline_raw, atol=1e-5))
    if mode == "int":
        checks["int_demo_maps_unknowns_to_1"] = bool(encoded.shape == (1, 7) and encoded[0, 3] == 1 and encoded[0, 6] == 1)
    if mode == "tf_idf":
        checks["tf_idf_weights_positive"] = bool(encoded[0, 0] > 0 and encoded[0].max() > 0 and encoded.min() >= 0)

print("RESULT " + json.dumps({"figures": figures, "checks": checks, "info": info}))

import keras
# Scenario: OCR of captchas with CNN, RNN and CTC (examples/vision/captcha_ocr, Keras 3 version), on
# synthetic captchas: each of 4 character slots draws that character's own glyph, with noise. As in
# the example: images resized with ops.image.resize and transposed with ops.transpose so that time
# runs along the width, a model with two inputs ("image", "label"), Conv2D/MaxPooling2D blocks,
# Reshape, Dense, Dropout, Bidirectional(LSTM(return_sequences=True, dropout=...)), a softmax Dense
# "dense2" and an endpoint CTCLayer whose call(y_true, y_pred) computes a CTC loss and adds it with
# self.add_loss, compile(optimizer) without a loss, fit on dicts with EarlyStopping(val_loss,
# restore_best_weights), the prediction model Model(model.input[0], model.get_layer("dense2").output)
# and ops.ctc_decode(strategy="greedy") back to strings.
# The example runs on TensorFlow only; here, with Keras on JAX: the CTC loss is ops.ctc_loss on
# log-probabilities (the example calls tf.compat.v1.nn.ctc_loss); the lengths multiply static
# shapes (the example's ops.cast(ops.shape(...)[0], "int64") feeding ops.ones(shape=...) fails in
# JAX's tracing); characters map to integers with dicts laid out as StringLookup(mask_token=None)
# lays them out (index 0 the OOV slot, here also CTC's blank), since Keras 3's StringLookup needs
# TensorFlow (and with JAX, invert=True fails even then: strings cannot become JAX arrays).
# Thresholds: the loss falls by two thirds; greedy decoding reads at least 80% of the validation
# captchas right; decoded shapes are (batch, time) and only known characters come back.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(27)
rng = np.random.default_rng(0)

characters = sorted(set("3ab7dk5x"))
max_length = 4
img_width, img_height = 64, 16
batch_size = 16
downsample_factor = 4

# one fixed 16x16 glyph per character, drawn twice as large as the model sees it
glyphs = {c: rng.random((2 * img_height, 2 * img_height)) < 0.35 for c in characters}


def make_captchas(n):
    labels = ["".join(rng.choice(characters, max_length)) for _ in range(n)]
    images = np.zeros((n, 2 * img_height, 2 * img_width, 1), "float32")
    for i, label in enumerate(labels):
        for k, char in enumerate(label):
            images[i, :, 2 * img_height * k: 2 * img_height * (k + 1), 0] = glyphs[char]
    images = np.clip(images + 0.3 * rng.standard_normal(images.shape), 0, 1).astype("float32")
    return images, np.array(labels)


# Mapping characters to integers, and integers back to characters
char_to_num = {char: i + 1 for i, char in enumerate(characters)}
num_to_char = {i: char for char, i in char_to_num.items()}
vocabulary = ["[UNK]"] + characters


def encode_single_sample(img, label):
    # Resize to the desired size
    img = ops.image.resize(img, [img_height, img_width])
    # Transpose the image because we want the time dimension to correspond to the width of the image.
    img = ops.transpose(img, axes=[1, 0, 2])
    # Map the characters in label to numbers
    label = [char_to_num[char] for char in label]
    return {"image": ops.convert_to_numpy(img), "label": np.array(label, "float32")}


def encode(images, labels):
    samples = [encode_single_sample(img, label) for img, label in zip(images, labels)]
    return {"image": np.stack([s["image"] for s in samples]), "label": np.stack([s["label"] for s in samples])}


images, labels = make_captchas(704)
train_data = encode(images[:640], labels[:640])
valid_data = encode(images[640:], labels[640:])


def ctc_batch_cost(y_true, y_pred, input_length, label_length):
    label_length = ops.cast(ops.squeeze(label_length, axis=-1), dtype="int32")
    input_length = ops.cast(ops.squeeze(input_length, axis=-1), dtype="int32")
    y_pred = ops.log(y_pred + keras.backend.epsilon())
    return ops.expand_dims(ops.ctc_loss(ops.cast(y_true, dtype="int32"), y_pred, label_length, input_length), 1)


class CTCLayer(layers.Layer):
    def __init__(self, name=None):
        super().__init__(name=name)
        self.loss_fn = ctc_batch_cost

    def call(self, y_true, y_pred):
        # Compute the training-time loss value and add it to the layer using `self.add_loss()`.
        batch_len = ops.shape(y_true)[0]
        input_length = ops.shape(y_pred)[1]
        label_length = ops.shape(y_true)[1]

        input_length = input_length * ops.ones(shape=(batch_len, 1), dtype="int64")
        label_length = label_length * ops.ones(shape=(batch_len, 1), dtype="int64")

        loss = self.loss_fn(y_true, y_pred, input_length, label_length)
        self.add_loss(loss)

        # At test time, just return the computed predictions
        return y_pred


def build_model():
    # Inputs to the model
    input_img = layers.Input(shape=(img_width, img_height, 1), name="image", dtype="float32")
    labels = layers.Input(name="label", shape=(None,), dtype="float32")

    # First conv block
    x = layers.Conv2D(16, (3, 3), activation="relu", kernel_initializer="he_normal", padding="same",
                      name="Conv1")(input_img)
    x = layers.MaxPooling2D((2, 2), name="pool1")(x)

    # Second conv block
    x = layers.Conv2D(32, (3, 3), activation="relu", kernel_initializer="he_normal", padding="same",
                      name="Conv2")(x)
    x = layers.MaxPooling2D((2, 2), name="pool2")(x)

    # Two max pools with pool size and strides 2: the feature maps are 4x smaller. The last layer
    # has 32 filters. Reshape accordingly before passing the output to the RNN part of the model
    new_shape = ((img_width // 4), (img_height // 4) * 32)
    x = layers.Reshape(target_shape=new_shape, name="reshape")(x)
    x = layers.Dense(64, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.2)(x)

    # RNNs
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True, dropout=0.25))(x)
    x = layers.Bidirectional(layers.LSTM(32, return_sequences=True, dropout=0.25))(x)

    # Output layer
    x = layers.Dense(len(vocabulary) + 1, activation="softmax", name="dense2")(x)

    # Add CTC layer for calculating CTC loss at each step
    output = CTCLayer(name="ctc_loss")(labels, x)

    # Define the model
    model = keras.models.Model(inputs=[input_img, labels], outputs=output, name="ocr_model_v1")
    # Optimizer
    opt = keras.optimizers.Adam()
    # Compile the model and return
    model.compile(optimizer=opt)
    return model


model = build_model()

epochs = 30
early_stopping_patience = 10
# Add early stopping
early_stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=early_stopping_patience,
                                               restore_best_weights=True)

history = model.fit(train_data, validation_data=valid_data, epochs=epochs, batch_size=batch_size,
                    callbacks=[early_stopping], verbose=0)

# Get the prediction model by extracting layers till the output layer
prediction_model = keras.models.Model(model.input[0], model.get_layer(name="dense2").output)


# A utility function to decode the output of the network
def decode_batch_predictions(pred):
    input_len = np.ones(pred.shape[0]) * pred.shape[1]
    # Use greedy search. For complex tasks, you can use beam search
    results = ops.ctc_decode(pred, sequence_lengths=input_len, strategy="greedy")[0][0]
    results = ops.convert_to_numpy(results)
    # Iterate over the results and get back the text (the decoded rows are padded with -1)
    output_text = []
    for res in results[:, :max_length]:
        output_text.append("".join(num_to_char.get(int(i), "") for i in res if i >= 0))
    return results.shape, output_text


preds = prediction_model.predict(valid_data["image"], verbose=0)
decoded_shape, pred_texts = decode_batch_predictions(preds)
orig_texts = ["".join(num_to_char[int(i)] for i in label) for label in valid_data["label"]]
read_right = float(np.mean([p == o for p, o in zip(pred_texts, orig_texts)]))
loss = history.history["loss"]

print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(history.history), "preds_shape": list(preds.shape),
                "decoded_batch": int(decoded_shape[0]), "params": int(model.count_params()),
                "prediction_model_inputs": len(prediction_model.inputs), "read_right_rate": round(read_right, 4),
                # add_loss sums the (batch, 1) CTC losses of a batch: about 16 x 10 before the model learns
                "first_epoch_loss": round(loss[0], 2), "first_val_loss": round(history.history["val_loss"][0], 2)},
    "checks": {"loss_falls_by_two_thirds": loss[-1] <= loss[0] / 3,
               "reads_80_percent_of_captchas": read_right >= 0.8,
               "decoded_is_batch_by_time": decoded_shape[0] == len(preds) and decoded_shape[1] <= preds.shape[1],
               "only_known_characters": all(set(t) <= set(characters) for t in pred_texts)},
    "info": {"epochs_run": len(loss), "loss": [round(v, 3) for v in loss],
             "val_loss": [round(v, 3) for v in history.history["val_loss"]],
             "examples": list(zip(orig_texts[:4], pred_texts[:4]))},
}))

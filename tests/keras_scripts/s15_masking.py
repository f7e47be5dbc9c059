import keras
# Scenario: masking and padding (the "Understanding masking & padding" guide):
# keras.utils.pad_sequences, Embedding(mask_zero=True) and compute_mask, the Masking layer, an LSTM
# that skips padded steps, a custom layer with supports_masking = True that passes the mask on,
# a TemporalSoftmax layer whose call(inputs, mask=None) uses the mask, and a layer that makes its
# own mask with compute_mask. Thresholds: the mask reaches the custom layers, extra padding does
# not change the LSTM model's predictions (atol 1e-5), and test accuracy >= 0.9.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(15)
rng = np.random.default_rng(0)
seen_masks = []

raw_inputs = [[711, 632, 71], [73, 8, 3215, 55, 927], [83, 91, 1, 645, 1253, 927]]
padded_inputs = keras.utils.pad_sequences(raw_inputs, padding="post")
embedding = layers.Embedding(input_dim=5000, output_dim=16, mask_zero=True)
masked_output = embedding(padded_inputs)
embedding_mask = ops.convert_to_numpy(embedding.compute_mask(padded_inputs))

masking_layer = layers.Masking()
unmasked_embedding = ops.cast(ops.tile(ops.expand_dims(padded_inputs, axis=-1), [1, 1, 10]), "float32")
masking_mask = ops.convert_to_numpy(masking_layer.compute_mask(unmasked_embedding))


class MyActivation(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # the mask passes through unchanged

    def call(self, inputs):
        return ops.relu(inputs)


class TemporalSoftmax(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        seen_masks.append(mask is not None)
        broadcast_float_mask = ops.expand_dims(ops.cast(mask, "float32"), -1)
        inputs_exp = ops.exp(inputs) * broadcast_float_mask
        inputs_sum = ops.sum(inputs_exp * broadcast_float_mask, axis=1, keepdims=True)
        return inputs_exp / inputs_sum


class CustomEmbedding(layers.Layer):
    def __init__(self, input_dim, output_dim, mask_zero=False, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim, self.mask_zero = input_dim, output_dim, mask_zero

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim), initializer="random_normal")

    def call(self, inputs):
        return ops.take(self.embeddings, ops.cast(inputs, "int32"), axis=0)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)


inputs = keras.Input(shape=(None,), dtype="int32")
x = layers.Embedding(input_dim=200, output_dim=8, mask_zero=True)(inputs)
x = layers.Dense(1)(x)
x = MyActivation()(x)
outputs = TemporalSoftmax()(x)
softmax_model = keras.Model(inputs, outputs)
attention = ops.convert_to_numpy(softmax_model(padded_inputs[:, :6] % 200))[..., 0]

custom = CustomEmbedding(10, 32, mask_zero=True)
custom_mask = ops.convert_to_numpy(custom.compute_mask(np.array([[1, 2, 0, 0]])))

# an LSTM classifier on variable-length sequences: is token 7 in the sequence?
def make(n):
    seqs, labels = [], []
    for _ in range(n):
        length = int(rng.integers(3, 15))
        seq = rng.integers(8, 60, length)
        label = int(rng.random() < 0.5)
        if label:
            seq[rng.integers(0, length)] = 7
        seqs.append(seq.tolist())
        labels.append(label)
    return seqs, np.array(labels, "float32")


train_seqs, y_train = make(1500)
test_seqs, y_test = make(300)
x_train = keras.utils.pad_sequences(train_seqs, maxlen=15, padding="post")
x_test = keras.utils.pad_sequences(test_seqs, maxlen=15, padding="post")
model = keras.Sequential([keras.Input(shape=(None,), dtype="int32"),
                          layers.Embedding(input_dim=60, output_dim=16, mask_zero=True),
                          layers.LSTM(16), layers.Dense(1, activation="sigmoid")])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=32, epochs=5, verbose=0)
_, accuracy = model.evaluate(x_test, y_test, verbose=0)
longer = keras.utils.pad_sequences(test_seqs, maxlen=25, padding="post")
padding_effect = float(np.max(np.abs(model.predict(x_test, verbose=0) - model.predict(longer, verbose=0))))
print(f"accuracy {accuracy:.4f}, max change from extra padding {padding_effect:.2e}")

result = {
    "figures": {
        "padded_inputs": padded_inputs.tolist(),
        "embedding_mask": embedding_mask.astype(int).tolist(),
        "masking_layer_mask": masking_mask.astype(int).tolist(),
        "masked_output_shape": list(masked_output.shape),
        "custom_embedding_mask": custom_mask.astype(int).tolist(),
        "softmax_zero_where_masked": bool(np.all(attention[embedding_mask[:, :6] == 0] == 0)),
        "softmax_rows_sum_to_one": bool(np.allclose(attention.sum(axis=1), 1, atol=1e-5)),
        "test_accuracy": float(accuracy),
    },
    "info": {"padding_effect": padding_effect},
    "checks": {
        "mask reached TemporalSoftmax": bool(seen_masks) and all(seen_masks),
        "padding does not change predictions": padding_effect <= 1e-5,
        "test_accuracy >= 0.9": accuracy >= 0.9,
    },
}
print("RESULT " + json.dumps(result))

import keras
# Scenario: the RNN guide (guides/working_with_rnns, Keras 3 version): the guide's Sequential
# models (Embedding + LSTM(128) + Dense; Embedding + GRU(256, return_sequences=True) +
# SimpleRNN(128) + Dense), its encoder-decoder where LSTM(64, return_state=True) states are passed
# as initial_state to a decoder LSTM (trained on synthetic token sequences whose label only the
# encoder sees), a stateful LSTM fed a sequence in three chunks with reset_state() and its states
# reused as another LSTM's initial_state, the Bidirectional(LSTM(64, return_sequences=True)) +
# Bidirectional(LSTM(32)) model (input_shape= on the first layer), the guide's
# build_model(allow_cudnn_kernel) pair LSTM vs RNN(LSTMCell) with BatchNormalization trained on
# synthetic class-prototype sequences and the weights copied with set_weights, and the guide's
# NestedCell (section "RNNs with list/dict inputs, or nested inputs") with the guide's matmul +
# einsum("bij,ijkl->bkl") math, two inputs (batch, t, i1) and (batch, t, i2, i3), two targets and
# a nested state_size. Keras 3's RNN layer steps over a single tensor (the guide's
# rnn((input_1, input_2)) raises in Keras 3, keras-io issue #2142), so the nested input travels
# packed (Reshape + Concatenate) and the cell unpacks it per step into (input_1, input_2); its
# states follow the nested inputs, state_size [[unit_1], [unit_2 * unit_3]], and come back nested
# with return_state=True.
# Thresholds: the encoder-decoder reaches accuracy 0.5 (chance 0.1); the LSTM and RNN(LSTMCell)
# models reach accuracy 0.6 (chance 0.25) and, with the same weights, predict the same; the
# stateful LSTM fed in chunks equals one LSTM over the whole sequence, reset_state() restarts it,
# and its states as initial_state continue the sequence; the NestedCell RNN equals a numpy loop of
# the guide's math and its training loss falls by a third.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(3)
rng = np.random.default_rng(0)

# ---- Built-in RNN layers: a simple example ----
model = keras.Sequential()
model.add(keras.Input(shape=(None,), dtype="int32"))
# Add an Embedding layer expecting input vocab of size 1000, and
# output embedding dimension of size 64.
model.add(layers.Embedding(input_dim=1000, output_dim=64))
# Add a LSTM layer with 128 internal units.
model.add(layers.LSTM(128))
# Add a Dense layer with 10 units.
model.add(layers.Dense(10))
simple_params = int(model.count_params())

# ---- Outputs and states ----
model = keras.Sequential()
model.add(keras.Input(shape=(None,), dtype="int32"))
model.add(layers.Embedding(input_dim=1000, output_dim=64))
# The output of GRU will be a 3D tensor of shape (batch_size, timesteps, 256)
model.add(layers.GRU(256, return_sequences=True))
# The output of SimpleRNN will be a 2D tensor of shape (batch_size, 128)
model.add(layers.SimpleRNN(128))
model.add(layers.Dense(10))
gru_model_params = int(model.count_params())
gru_layer_output_shape = list(model.layers[1].output.shape)
gru_model_output_shape = list(model.predict(rng.integers(0, 1000, (3, 7)), verbose=0).shape)

encoder_vocab = 1000
decoder_vocab = 2000

encoder_input = layers.Input(shape=(None,))
encoder_embedded = layers.Embedding(input_dim=encoder_vocab, output_dim=64)(encoder_input)

# Return states in addition to output
output, state_h, state_c = layers.LSTM(64, return_state=True, name="encoder")(encoder_embedded)
encoder_state = [state_h, state_c]

decoder_input = layers.Input(shape=(None,))
decoder_embedded = layers.Embedding(input_dim=decoder_vocab, output_dim=64)(decoder_input)

# Pass the 2 states to a new LSTM layer, as initial state
decoder_output = layers.LSTM(64, name="decoder")(decoder_embedded, initial_state=encoder_state)
output = layers.Dense(10)(decoder_output)

model = keras.Model([encoder_input, decoder_input], output)
seq2seq_params = int(model.count_params())
encoder_state_shapes = [list(state_h.shape), list(state_c.shape)]

# synthetic task: the label is the encoder's last token mod 10; the decoder sees random tokens,
# so only the state passed from the encoder carries the label
n = 768
enc_tokens = rng.integers(0, 40, (n, 6))
dec_tokens = rng.integers(0, 40, (n, 5))
seq2seq_labels = enc_tokens[:, -1] % 10
model.compile(optimizer=keras.optimizers.Adam(learning_rate=5e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
seq2seq_history = model.fit([enc_tokens[:640], dec_tokens[:640]], seq2seq_labels[:640], batch_size=64, epochs=5,
                            verbose=0)
_, seq2seq_accuracy = model.evaluate([enc_tokens[640:], dec_tokens[640:]], seq2seq_labels[640:], verbose=0)

# ---- Cross-batch statefulness ----
paragraph1 = rng.random((20, 10, 50)).astype(np.float32)
paragraph2 = rng.random((20, 10, 50)).astype(np.float32)
paragraph3 = rng.random((20, 10, 50)).astype(np.float32)

lstm_layer = layers.LSTM(64, stateful=True)
output1 = lstm_layer(paragraph1)
output2 = lstm_layer(paragraph2)
output3 = lstm_layer(paragraph3)

# the same weights over the whole sequence at once
whole_lstm = layers.LSTM(64)
whole_lstm.build((20, 30, 50))
whole_lstm.set_weights(lstm_layer.get_weights())
whole_output = whole_lstm(np.concatenate([paragraph1, paragraph2, paragraph3], axis=1))

# reset_state() will reset the cached state to the original initial_state.
# If no initial_state was provided, zero-states will be used by default.
lstm_layer.reset_state()
output1_again = lstm_layer(paragraph1)
state_count = len(lstm_layer.states)
state_shapes = [list(s.shape) for s in lstm_layer.states]

# ---- RNN State Reuse ----
lstm_layer.reset_state()
output = lstm_layer(paragraph1)
output = lstm_layer(paragraph2)

existing_state = lstm_layer.states

new_lstm_layer = layers.LSTM(64)
new_lstm_layer.build((20, 10, 50))
new_lstm_layer.set_weights(lstm_layer.get_weights())
new_output = new_lstm_layer(paragraph3, initial_state=[ops.convert_to_tensor(s) for s in existing_state])

# ---- Bidirectional RNNs ----
model = keras.Sequential()
model.add(layers.Bidirectional(layers.LSTM(64, return_sequences=True), input_shape=(5, 10)))
model.add(layers.Bidirectional(layers.LSTM(32)))
model.add(layers.Dense(10))
bidirectional_params = int(model.count_params())
bidirectional_output_shape = list(model.layers[0].output.shape)
bidirectional_layer_names = [model.layers[0].forward_layer.__class__.__name__,
                             bool(model.layers[0].backward_layer.go_backwards)]

# ---- RNN(LSTMCell) vs LSTM: the guide's build_model ----
batch_size = 64
# Each synthetic batch is a tensor of shape (batch_size, 12, 8) (rows are treated like time).
input_dim = 8
units = 32
output_size = 4  # labels are from 0 to 3


# Build the RNN model
def build_model(allow_cudnn_kernel=True):
    # CuDNN is only available at the layer level, and not at the cell level.
    # This means `LSTM(units)` will use the CuDNN kernel,
    # while RNN(LSTMCell(units)) will run on non-CuDNN kernel.
    if allow_cudnn_kernel:
        # The LSTM layer with default options uses CuDNN.
        lstm_layer = keras.layers.LSTM(units, input_shape=(None, input_dim))
    else:
        # Wrapping a LSTMCell in a RNN layer will not use CuDNN.
        lstm_layer = keras.layers.RNN(keras.layers.LSTMCell(units), input_shape=(None, input_dim))
    model = keras.models.Sequential(
        [
            lstm_layer,
            keras.layers.BatchNormalization(),
            keras.layers.Dense(output_size),
        ]
    )
    return model


prototypes = rng.normal(0, 1, (output_size, 12, input_dim)).astype("float32")
y_all = rng.integers(0, output_size, 640)
x_all = prototypes[y_all] + rng.normal(0, 1.0, (640, 12, input_dim)).astype("float32")
x_train, y_train, x_test, y_test = x_all[:512], y_all[:512], x_all[512:], y_all[512:]

model = build_model(allow_cudnn_kernel=True)
model.compile(
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    optimizer="sgd",
    metrics=["accuracy"],
)
lstm_history = model.fit(x_train, y_train, validation_data=(x_test, y_test), batch_size=batch_size, epochs=6,
                         verbose=0)

noncudnn_model = build_model(allow_cudnn_kernel=False)
noncudnn_model.set_weights(model.get_weights())
noncudnn_model.compile(
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    optimizer="sgd",
    metrics=["accuracy"],
)
same_predictions = np.allclose(model.predict(x_test, verbose=0), noncudnn_model.predict(x_test, verbose=0),
                               atol=1e-4)
cell_history = noncudnn_model.fit(x_train, y_train, validation_data=(x_test, y_test), batch_size=batch_size,
                                  epochs=2, verbose=0)
lstm_cell_params = [int(model.count_params()), int(noncudnn_model.count_params())]
sample, sample_label = x_test[0], y_test[0]
result = np.argmax(model.predict_on_batch(np.expand_dims(sample, 0)), axis=1)

# ---- RNNs with list/dict inputs, or nested inputs ----
unit_1 = 4
unit_2 = 3
unit_3 = 5

i1 = 6
i2 = 4
i3 = 3
batch_size = 32
num_batches = 8
timestep = 10


@keras.saving.register_keras_serializable()
class NestedCell(keras.layers.Layer):
    def __init__(self, unit_1, unit_2, unit_3, i1, i2, i3, **kwargs):
        self.unit_1 = unit_1
        self.unit_2 = unit_2
        self.unit_3 = unit_3
        self.i1, self.i2, self.i3 = i1, i2, i3
        # one state per nested input: [[state_1], [state_2_3]]
        self.state_size = [[unit_1], [unit_2 * unit_3]]
        self.output_size = unit_1 + unit_2 * unit_3
        super().__init__(**kwargs)

    def unpack(self, inputs):
        # the packed step input (batch, i1 + i2 * i3) as the nested [(batch, i1), (batch, i2, i3)]
        return inputs[:, : self.i1], ops.reshape(inputs[:, self.i1:], (-1, self.i2, self.i3))

    def get_initial_state(self, batch_size=None):
        return [[ops.zeros((batch_size, self.unit_1))], [ops.zeros((batch_size, self.unit_2 * self.unit_3))]]

    def build(self, input_shape):
        # expect input_shape to contain 2 items, [(batch, i1), (batch, i2, i3)]
        input_shapes = [(input_shape[0], self.i1), (input_shape[0], self.i2, self.i3)]
        i1 = input_shapes[0][1]
        i2 = input_shapes[1][1]
        i3 = input_shapes[1][2]

        self.kernel_1 = self.add_weight(shape=(i1, self.unit_1), initializer="uniform", name="kernel_1")
        self.kernel_2_3 = self.add_weight(
            shape=(i2, i3, self.unit_2, self.unit_3),
            initializer="uniform",
            name="kernel_2_3",
        )

    def call(self, inputs, states):
        # inputs should be in [(batch, input_1), (batch, input_2, input_3)]
        # state should be in shape [[(batch, unit_1)], [(batch, unit_2 * unit_3)]]
        input_1, input_2 = self.unpack(inputs)
        [s1], [s2] = states

        output_1 = ops.matmul(input_1, self.kernel_1)
        output_2_3 = ops.einsum("bij,ijkl->bkl", input_2, self.kernel_2_3)
        output_2_3 = ops.reshape(output_2_3, (-1, self.unit_2 * self.unit_3))
        state_1 = s1 + output_1
        state_2_3 = s2 + output_2_3

        output = ops.concatenate([output_1, output_2_3], axis=-1)
        new_states = [[state_1], [state_2_3]]

        return output, new_states

    def get_config(self):
        return {"unit_1": self.unit_1, "unit_2": self.unit_2, "unit_3": self.unit_3,
                "i1": self.i1, "i2": self.i2, "i3": self.i3}


cell = NestedCell(unit_1, unit_2, unit_3, i1, i2, i3)
rnn = keras.layers.RNN(cell, return_state=True)

input_1 = keras.Input((None, i1))
input_2 = keras.Input((None, i2, i3))
packed = layers.Concatenate()([input_1, layers.Reshape((-1, i2 * i3))(input_2)])

outputs, [final_state_1], [final_state_2_3] = rnn(packed)
output_1 = outputs[:, :unit_1]
output_2_3 = layers.Reshape((unit_2, unit_3))(outputs[:, unit_1:])

model = keras.models.Model([input_1, input_2], [output_1, output_2_3])
nested_output_shapes = [list(t.shape) for t in model.outputs]
nested_state_shapes = [list(final_state_1.shape), list(final_state_2_3.shape)]

model.compile(optimizer="adam", loss="mse")

input_1_data = rng.random((batch_size * num_batches, timestep, i1)).astype("float32")
input_2_data = rng.random((batch_size * num_batches, timestep, i2, i3)).astype("float32")
target_1_data = rng.random((batch_size * num_batches, unit_1)).astype("float32")
target_2_data = rng.random((batch_size * num_batches, unit_2, unit_3)).astype("float32")
input_data = [input_1_data, input_2_data]
target_data = [target_1_data, target_2_data]

# the guide's math in numpy, on the untrained weights
k1, k23 = (ops.convert_to_numpy(w) for w in (cell.kernel_1, cell.kernel_2_3))
predicted_1, predicted_2_3 = model.predict([input_1_data[:8], input_2_data[:8]], verbose=0)
numpy_1 = input_1_data[:8, -1] @ k1
numpy_2_3 = np.einsum("bij,ijkl->bkl", input_2_data[:8, -1], k23)
state_model = keras.Model([input_1, input_2], [final_state_1, final_state_2_3])
state_1_value, state_2_3_value = state_model.predict([input_1_data[:8], input_2_data[:8]], verbose=0)
numpy_state_1 = np.einsum("bti,iu->bu", input_1_data[:8], k1)
numpy_state_2_3 = np.einsum("btij,ijkl->bkl", input_2_data[:8], k23).reshape(8, -1)
nested_matches_numpy = bool(np.allclose(predicted_1, numpy_1, rtol=1e-4, atol=1e-4)
                            and np.allclose(predicted_2_3, numpy_2_3, rtol=1e-4, atol=1e-4)
                            and np.allclose(state_1_value, numpy_state_1, rtol=1e-4, atol=1e-4)
                            and np.allclose(state_2_3_value, numpy_state_2_3, rtol=1e-4, atol=1e-4))

nested_history = model.fit(input_data, target_data, batch_size=batch_size, epochs=10, verbose=0)
nested_loss = nested_history.history["loss"]

print("RESULT " + json.dumps({
    "figures": {"simple_params": simple_params, "gru_model_params": gru_model_params,
                "gru_layer_output_shape": gru_layer_output_shape, "gru_model_output_shape": gru_model_output_shape,
                "seq2seq_params": seq2seq_params, "encoder_state_shapes": encoder_state_shapes,
                "stateful_state_count": state_count, "stateful_state_shapes": state_shapes,
                "stateful_output_shape": list(output3.shape),
                "bidirectional_params": bidirectional_params,
                "bidirectional_output_shape": bidirectional_output_shape,
                "bidirectional_layers": bidirectional_layer_names,
                "lstm_cell_params": lstm_cell_params, "predicted_shape": list(result.shape),
                "lstm_history_keys": sorted(lstm_history.history),
                "nested_output_shapes": nested_output_shapes, "nested_state_shapes": nested_state_shapes,
                "nested_cell_weights": [list(w.shape) for w in cell.weights],
                "seq2seq_accuracy": round(float(seq2seq_accuracy), 4),
                "lstm_val_accuracy": round(lstm_history.history["val_accuracy"][-1], 4),
                "nested_final_loss": round(nested_loss[-1], 4)},
    "checks": {"seq2seq_accuracy_at_least_0.5": seq2seq_accuracy >= 0.5,
               "lstm_val_accuracy_at_least_0.6": lstm_history.history["val_accuracy"][-1] >= 0.6,
               "lstm_cell_val_accuracy_at_least_0.6": cell_history.history["val_accuracy"][-1] >= 0.6,
               "lstm_and_rnn_lstmcell_predict_the_same": bool(same_predictions),
               "stateful_chunks_equal_whole_sequence": bool(np.allclose(output3, whole_output, atol=1e-5)),
               "reset_state_restarts": bool(np.allclose(output1_again, output1, atol=1e-6)),
               "reused_states_continue_the_sequence": bool(np.allclose(new_output, output3, atol=1e-5)),
               "nested_cell_matches_numpy": nested_matches_numpy,
               "nested_loss_falls_by_a_third": nested_loss[-1] <= nested_loss[0] * 2 / 3},
    "info": {"seq2seq_loss": [round(v, 4) for v in seq2seq_history.history["loss"]],
             "lstm_val_accuracy": [round(v, 4) for v in lstm_history.history["val_accuracy"]],
             "lstm_cell_val_accuracy": [round(v, 4) for v in cell_history.history["val_accuracy"]],
             "nested_history_keys": sorted(nested_history.history),
             "nested_loss": [round(v, 4) for v in nested_loss],
             "predicted_result": int(result[0]), "target_result": int(sample_label)},
}))

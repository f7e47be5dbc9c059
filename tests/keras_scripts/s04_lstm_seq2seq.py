import keras
# Scenario: character-level sequence to sequence with LSTMs (the "lstm_seq2seq" example),
# functional API: an encoder LSTM(return_state=True) whose states start a decoder
# LSTM(return_sequences=True, return_state=True) trained with teacher forcing on one-hot
# characters; then separate encoder / decoder inference models built from the trained layers and
# greedy decoding. Task: reverse a word of 3-6 letters. Thresholds: teacher-forced validation
# accuracy >= 0.9 and >= 70% of held-out words decoded exactly.
import json

import numpy as np

keras.utils.set_random_seed(4)
rng = np.random.default_rng(0)
letters = "abcdefgh"
input_characters = sorted(letters)
target_characters = sorted(letters + "\t\n")  # "\t" starts a target, "\n" ends it
num_encoder_tokens, num_decoder_tokens = len(input_characters), len(target_characters)
max_encoder_seq_length, max_decoder_seq_length = 6, 8
input_token_index = {c: i for i, c in enumerate(input_characters)}
target_token_index = {c: i for i, c in enumerate(target_characters)}
reverse_target_char_index = {i: c for c, i in target_token_index.items()}
latent_dim = 96

words = ["".join(rng.choice(list(letters), rng.integers(3, 7))) for _ in range(2400)]
input_texts, target_texts = words, ["\t" + w[::-1] + "\n" for w in words]

encoder_input_data = np.zeros((len(words), max_encoder_seq_length, num_encoder_tokens), dtype="float32")
decoder_input_data = np.zeros((len(words), max_decoder_seq_length, num_decoder_tokens), dtype="float32")
decoder_target_data = np.zeros((len(words), max_decoder_seq_length, num_decoder_tokens), dtype="float32")
for i, (input_text, target_text) in enumerate(zip(input_texts, target_texts)):
    for t, char in enumerate(input_text):
        encoder_input_data[i, t, input_token_index[char]] = 1.0
    for t, char in enumerate(target_text):
        decoder_input_data[i, t, target_token_index[char]] = 1.0
        if t > 0:
            decoder_target_data[i, t - 1, target_token_index[char]] = 1.0
    decoder_target_data[i, len(target_text) - 1:, target_token_index["\n"]] = 1.0  # pad with "end"

# training model
encoder_inputs = keras.Input(shape=(None, num_encoder_tokens))
encoder = keras.layers.LSTM(latent_dim, return_state=True)
encoder_outputs, state_h, state_c = encoder(encoder_inputs)
encoder_states = [state_h, state_c]

decoder_inputs = keras.Input(shape=(None, num_decoder_tokens))
decoder_lstm = keras.layers.LSTM(latent_dim, return_sequences=True, return_state=True)
decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
decoder_dense = keras.layers.Dense(num_decoder_tokens, activation="softmax")
decoder_outputs = decoder_dense(decoder_outputs)
model = keras.Model([encoder_inputs, decoder_inputs], decoder_outputs)

model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
n_train = 2000
history = model.fit(
    [encoder_input_data[:n_train], decoder_input_data[:n_train]], decoder_target_data[:n_train],
    batch_size=64, epochs=12, validation_split=0.1, verbose=2,
)

# inference models, from the trained layers
encoder_model = keras.Model(encoder_inputs, encoder_states)
decoder_state_input_h = keras.Input(shape=(latent_dim,))
decoder_state_input_c = keras.Input(shape=(latent_dim,))
decoder_states_inputs = [decoder_state_input_h, decoder_state_input_c]
decoder_outputs, state_h, state_c = decoder_lstm(decoder_inputs, initial_state=decoder_states_inputs)
decoder_states = [state_h, state_c]
decoder_outputs = decoder_dense(decoder_outputs)
decoder_model = keras.Model([decoder_inputs] + decoder_states_inputs, [decoder_outputs] + decoder_states)


def decode_sequences(input_seq):
    """Greedy decoding of a batch, one character per step for every sequence at once."""
    states_value = encoder_model.predict(input_seq, verbose=0)
    n = len(input_seq)
    target_seq = np.zeros((n, 1, num_decoder_tokens), dtype="float32")
    target_seq[:, 0, target_token_index["\t"]] = 1.0
    decoded, done = [""] * n, [False] * n
    for _ in range(max_decoder_seq_length):
        output_tokens, h, c = decoder_model.predict([target_seq] + states_value, verbose=0)
        sampled = np.argmax(output_tokens[:, -1, :], axis=-1)
        for i, token in enumerate(sampled):
            char = reverse_target_char_index[int(token)]
            if char == "\n":
                done[i] = True
            elif not done[i]:
                decoded[i] += char
        target_seq = np.zeros((n, 1, num_decoder_tokens), dtype="float32")
        target_seq[np.arange(n), 0, sampled] = 1.0
        states_value = [h, c]
    return decoded


held_out = slice(n_train, n_train + 200)
decoded = decode_sequences(encoder_input_data[held_out])
exact = float(np.mean([d == w[::-1] for d, w in zip(decoded, input_texts[held_out])]))
for w, d in list(zip(input_texts[held_out], decoded))[:5]:
    print(f"{w} -> {d}")
val_accuracy = history.history["val_accuracy"][-1]
print(f"val accuracy {val_accuracy:.4f}, exact decodes {exact:.3f}")

result = {
    "figures": {
        "final_loss": float(history.history["loss"][-1]),
        "val_accuracy": float(val_accuracy),
        "exact_decode_rate": exact,
        "encoder_model_outputs": len(encoder_model.outputs),
        "decoder_model_inputs": len(decoder_model.inputs),
    },
    "checks": {"val_accuracy >= 0.9": bool(val_accuracy >= 0.9), "exact_decode_rate >= 0.7": bool(exact >= 0.7)},
}
print("RESULT " + json.dumps(result))

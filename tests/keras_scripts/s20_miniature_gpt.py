import keras
# Scenario: a miniature GPT (examples/generative/text_generation_with_miniature_gpt): token and
# position embeddings, a transformer block whose causal mask is built with keras.ops inside call()
# (broadcast over the batch, so that JAX's tracing sees static shapes),
# MultiHeadAttention with attention_mask, a model with two outputs compiled with loss=[fn, None]
# and fitted on one target (the second output has no loss), and a callback that generates text
# with model.predict and ops.top_k at each epoch's end. Thresholds: the training loss falls by at
# least a third; the generated sequences hold only known token ids.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(11)
rng = np.random.default_rng(0)


def causal_attention_mask(n_dest, n_src, dtype):
    """(1, n_dest, n_src): position i attends to positions <= i (broadcast over the batch)."""
    i = ops.arange(n_dest)[:, None]
    j = ops.arange(n_src)
    m = i >= j - n_src + n_dest
    mask = ops.cast(m, dtype)
    return ops.reshape(mask, [1, n_dest, n_src])


class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads, embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs):
        seq_len = ops.shape(inputs)[1]
        causal_mask = causal_attention_mask(seq_len, seq_len, "bool")
        attention_output = self.att(inputs, inputs, attention_mask=causal_mask)
        attention_output = self.dropout1(attention_output)
        out1 = self.layernorm1(inputs + attention_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output)
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(0, maxlen, 1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions


vocab_size, maxlen, embed_dim, num_heads, feed_forward_dim = 30, 16, 32, 2, 32


def create_model():
    inputs = layers.Input(shape=(maxlen,), dtype="int32")
    x = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(inputs)
    x = TransformerBlock(embed_dim, num_heads, feed_forward_dim)(x)
    outputs = layers.Dense(vocab_size)(x)
    model = keras.Model(inputs=inputs, outputs=[outputs, x])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss=[loss_fn, None])
    return model


# token ids of a tiny language: each sentence counts upwards from a random start (ids 2..29; 0 pads)
starts = rng.integers(2, 14, 400)
tokens = np.stack([np.arange(s, s + maxlen + 1) for s in starts]).astype("int32")
x, y = tokens[:, :-1], tokens[:, 1:]


class TextGenerator(keras.callbacks.Callback):
    def __init__(self, max_tokens, start_tokens, top_k=3):
        self.max_tokens, self.start_tokens, self.k = max_tokens, start_tokens, top_k
        self.generated = []

    def sample_from(self, logits):
        logits, indices = ops.top_k(logits, k=self.k, sorted=True)
        indices = np.asarray(indices).astype("int32")
        preds = keras.activations.softmax(ops.expand_dims(logits, 0))[0]
        preds = np.asarray(preds).astype("float32")
        return int(np.random.default_rng(0).choice(indices, p=preds / preds.sum()))

    def on_epoch_end(self, epoch, logs=None):
        start_tokens = list(self.start_tokens)
        tokens_generated = []
        while len(tokens_generated) <= self.max_tokens:
            pad_len = maxlen - len(start_tokens)
            sample_index = len(start_tokens) - 1
            if pad_len < 0:
                xs, sample_index = start_tokens[:maxlen], maxlen - 1
            elif pad_len > 0:
                xs = start_tokens + [0] * pad_len
            else:
                xs = start_tokens
            y_pred, _ = self.model.predict(np.array([xs]), verbose=0)
            sample_token = self.sample_from(y_pred[0][sample_index])
            tokens_generated.append(sample_token)
            start_tokens.append(sample_token)
        self.generated.append(tokens_generated)


gen = TextGenerator(6, [3, 4])
model = create_model()
history = model.fit(x, y, verbose=0, epochs=4, batch_size=32, callbacks=[gen])
losses = history.history["loss"]
logits, hidden = model.predict(x[:2], verbose=0)

print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(history.history), "output_shapes": [list(logits.shape), list(hidden.shape)],
                "generated_lengths": [len(g) for g in gen.generated]},
    "checks": {"loss_falls_by_a_third": losses[-1] <= losses[0] * 2 / 3,
               "generated_ids_known": all(0 <= t < vocab_size for g in gen.generated for t in g)},
    "info": {"loss": [round(v, 4) for v in losses], "last_generated": gen.generated[-1]},
}))

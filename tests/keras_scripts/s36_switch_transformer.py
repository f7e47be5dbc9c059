import keras
# Scenario: text classification with a Switch Transformer
# (examples/nlp/text_classification_with_switch_transformer, Keras 3 version), on synthetic token
# sequences in place of IMDB: the TokenAndPositionEmbedding layer (two Embeddings, ops.arange
# positions), create_feedforward_network experts (Sequential of two Dense), load_balanced_loss
# (ops.mean of the router probabilities times the expert mask, scaled by num_experts**2), the
# Router layer (Dense logits, exploration noise from keras.random.uniform when training, softmax,
# ops.top_k(k=1), ops.one_hot expert mask, the auxiliary loss added with self.add_loss, capacity
# positions by ops.cumsum, ops.less, ops.squeeze(ops.one_hot(...)) combine and dispatch tensors),
# the Switch layer (ops.reshape to [num_tokens_per_batch, embed_dim], ops.einsum "ab,acd->cdb"
# dispatch, ops.unstack to the experts, ops.stack, ops.einsum "abc,xba->xc" combine), and the
# TransformerBlock (MultiHeadAttention, LayerNormalization(epsilon=1e-6), Dropout) in a functional
# classifier with GlobalAveragePooling1D, Dropout and a softmax head, compiled with Adam and
# sparse_categorical_crossentropy and fit with validation_data. Router and Switch set attributes
# before super().__init__(), as the example does. One change from the example: the Router's
# exploration noise draws from a keras.random.SeedGenerator attribute, since Keras on JAX refuses
# unseeded random ops inside a traced train step; and the Input has a fixed batch_size, since the
# Switch reshapes to the global num_tokens_per_batch. A standalone Router with fixed weights shows
# the dispatch on a fixed input.
# Thresholds: validation accuracy at least 0.85; the training loss falls by a quarter; one
# auxiliary loss per call, at least 1 (its value for a perfectly balanced router) and finite;
# with fixed weights, every token goes to at most one expert slot, no expert gets more than its
# capacity, and the combine weights are the top-1 router probabilities of the tokens kept.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(6)
rng = np.random.default_rng(0)

vocab_size = 200  # Only consider the top 200 words
num_tokens_per_example = 16  # Only consider the first 16 words of each sequence
positive, negative = np.arange(1, 21), np.arange(21, 41)


def make(n):
    x = rng.integers(50, vocab_size, (n, num_tokens_per_example))
    y = rng.integers(0, 2, n)
    for i in range(n):
        words = rng.choice(positive if y[i] else negative, 3)
        x[i, rng.choice(num_tokens_per_example, 3, replace=False)] = words
    return x.astype("int32"), y.astype("int32")


x_train, y_train = make(512)
x_val, y_val = make(128)

embed_dim = 16  # Embedding size for each token.
num_heads = 2  # Number of attention heads
ff_dim = 16  # Hidden layer size in feedforward network.
num_experts = 4  # Number of experts used in the Switch Transformer.
batch_size = 32  # Batch size.
learning_rate = 0.003  # Learning rate.
dropout_rate = 0.25  # Dropout rate.
num_epochs = 6  # Number of epochs.
num_tokens_per_batch = batch_size * num_tokens_per_example  # Total number of tokens per batch.


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions


def create_feedforward_network(ff_dim, embed_dim, name=None):
    return keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)], name=name)


def load_balanced_loss(router_probs, expert_mask):
    # router_probs [tokens_per_batch, num_experts] is the probability assigned for
    # each expert per token. expert_mask [tokens_per_batch, num_experts] contains
    # the expert with the highest router probability in one-hot format.
    num_experts = ops.shape(expert_mask)[-1]
    # Get the fraction of tokens routed to each expert.
    density = ops.mean(expert_mask, axis=0)
    # Get fraction of probability mass assigned to each expert from the router across all tokens.
    density_proxy = ops.mean(router_probs, axis=0)
    # Both vectors are pushed towards uniform allocation when the dot product is minimized.
    loss = ops.mean(density_proxy * density) * ops.cast((num_experts**2), "float32")
    return loss


class Router(layers.Layer):
    def __init__(self, num_experts, expert_capacity):
        self.num_experts = num_experts
        self.route = layers.Dense(units=num_experts)
        self.expert_capacity = expert_capacity
        self.seed_generator = keras.random.SeedGenerator(1337)
        super().__init__()

    def call(self, inputs, training=False):
        # inputs shape: [tokens_per_batch, embed_dim]
        # router_logits shape: [tokens_per_batch, num_experts]
        router_logits = self.route(inputs)

        if training:
            # Add noise for exploration across experts.
            router_logits += keras.random.uniform(
                shape=router_logits.shape, minval=0.9, maxval=1.1, seed=self.seed_generator
            )
        # Probabilities for each token of what expert it should be sent to.
        router_probs = keras.activations.softmax(router_logits, axis=-1)
        # Get the top-1 expert for each token. expert_gate is the top-1 probability
        # from the router for each token. expert_index is what expert each token
        # is going to be routed to.
        expert_gate, expert_index = ops.top_k(router_probs, k=1)
        # expert_mask shape: [tokens_per_batch, num_experts]
        expert_mask = ops.one_hot(expert_index, self.num_experts)
        # Compute load balancing loss.
        aux_loss = load_balanced_loss(router_probs, expert_mask)
        self.add_loss(aux_loss)
        # Experts have a fixed capacity, ensure we do not exceed it.
        position_in_expert = ops.cast(ops.cumsum(expert_mask, axis=0) * expert_mask, "int32")
        # Keep only tokens that fit within expert capacity.
        expert_mask *= ops.cast(
            ops.less(ops.cast(position_in_expert, "int32"), self.expert_capacity),
            "float32",
        )
        expert_mask_flat = ops.sum(expert_mask, axis=-1)
        # Mask out the experts that have overflowed the expert capacity.
        expert_gate *= expert_mask_flat
        # Combine expert outputs and scaling with router probability.
        # combine_tensor shape: [tokens_per_batch, num_experts, expert_capacity]
        combined_tensor = ops.expand_dims(
            expert_gate * expert_mask_flat * ops.squeeze(ops.one_hot(expert_index, self.num_experts), 1),
            -1,
        ) * ops.squeeze(ops.one_hot(position_in_expert, self.expert_capacity), 1)
        # Create binary dispatch_tensor [tokens_per_batch, num_experts, expert_capacity]
        # that is 1 if the token gets routed to the corresponding expert.
        dispatch_tensor = ops.cast(combined_tensor, "float32")

        return dispatch_tensor, combined_tensor


class Switch(layers.Layer):
    def __init__(self, num_experts, embed_dim, ff_dim, num_tokens_per_batch, capacity_factor=1):
        self.num_experts = num_experts
        self.embed_dim = embed_dim
        self.experts = [create_feedforward_network(ff_dim, embed_dim) for _ in range(num_experts)]

        self.expert_capacity = num_tokens_per_batch // self.num_experts
        self.router = Router(self.num_experts, self.expert_capacity)
        super().__init__()

    def call(self, inputs):
        batch_size = ops.shape(inputs)[0]
        num_tokens_per_example = ops.shape(inputs)[1]

        # inputs shape: [num_tokens_per_batch, embed_dim]
        inputs = ops.reshape(inputs, [num_tokens_per_batch, self.embed_dim])
        # combine_tensor shape: [tokens_per_batch, num_experts, expert_capacity]
        dispatch_tensor, combine_tensor = self.router(inputs)
        # expert_inputs shape: [num_experts, expert_capacity, embed_dim]
        expert_inputs = ops.einsum("ab,acd->cdb", inputs, dispatch_tensor)
        expert_inputs = ops.reshape(expert_inputs, [self.num_experts, self.expert_capacity, self.embed_dim])
        # Dispatch to experts
        expert_input_list = ops.unstack(expert_inputs, axis=0)
        expert_output_list = [
            self.experts[idx](expert_input) for idx, expert_input in enumerate(expert_input_list)
        ]
        # expert_outputs shape: [expert_capacity, num_experts, embed_dim]
        expert_outputs = ops.stack(expert_output_list, axis=1)
        # expert_outputs_combined shape: [tokens_per_batch, embed_dim]
        expert_outputs_combined = ops.einsum("abc,xba->xc", expert_outputs, combine_tensor)
        # output shape: [batch_size, num_tokens_per_example, embed_dim]
        outputs = ops.reshape(expert_outputs_combined, [batch_size, num_tokens_per_example, self.embed_dim])
        return outputs


class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ffn, dropout_rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        # The ffn can be either a standard feedforward network or a switch
        # layer with a Mixture of Experts.
        self.ffn = ffn
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(dropout_rate)
        self.dropout2 = layers.Dropout(dropout_rate)

    def call(self, inputs, training=False):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output, training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output, training=training)
        return self.layernorm2(out1 + ffn_output)


def create_classifier():
    switch = Switch(num_experts, embed_dim, ff_dim, num_tokens_per_batch)
    transformer_block = TransformerBlock(embed_dim // num_heads, num_heads, switch)

    inputs = layers.Input(shape=(num_tokens_per_example,), batch_size=batch_size)
    embedding_layer = TokenAndPositionEmbedding(num_tokens_per_example, vocab_size, embed_dim)
    x = embedding_layer(inputs)
    x = transformer_block(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(dropout_rate)(x)
    x = layers.Dense(ff_dim, activation="relu")(x)
    x = layers.Dropout(dropout_rate)(x)
    outputs = layers.Dense(2, activation="softmax")(x)

    classifier = keras.Model(inputs=inputs, outputs=outputs)
    return classifier, switch


def run_experiment(classifier):
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = classifier.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=num_epochs,
        validation_data=(x_val, y_val),
        verbose=0,
    )
    return history


classifier, switch = create_classifier()
history = run_experiment(classifier)
_ = classifier(x_val[:batch_size])
aux_losses = [float(v) for v in classifier.losses]
probs = classifier.predict(x_val, batch_size=batch_size, verbose=0)
val_acc = float(np.mean(np.argmax(probs, -1) == y_val))

# ---- a standalone Router with fixed weights on a fixed input: the dispatch bookkeeping ----------
n_tokens, capacity = 24, 4
router = Router(num_experts, capacity)
tokens = np.linspace(-1.0, 1.0, n_tokens * embed_dim).reshape(n_tokens, embed_dim).astype("float32")
tokens = np.sin(3.0 * tokens + np.arange(embed_dim, dtype="float32"))
router.route.build((None, embed_dim))
kernel = np.cos(np.arange(embed_dim * num_experts, dtype="float32")).reshape(embed_dim, num_experts)
router.route.set_weights([kernel, np.zeros(num_experts, "float32")])
dispatch, combine = router(tokens)
dispatch, combine = np.asarray(dispatch), np.asarray(combine)
fixed_aux = float(router.losses[0])
logits = tokens @ kernel
router_probs = np.exp(logits - logits.max(-1, keepdims=True))
router_probs /= router_probs.sum(-1, keepdims=True)
top1 = router_probs.argmax(-1)
slots_per_token = dispatch.reshape(n_tokens, -1).astype(bool).sum(-1)
kept = slots_per_token == 1
tokens_per_expert = dispatch.astype(bool).sum(axis=(0, 2))

loss = history.history["loss"]
print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(history.history), "classifier_params": int(classifier.count_params()),
                "switch_params": int(switch.count_params()), "expert_capacity": int(switch.expert_capacity),
                "num_switch_weights": len(switch.weights), "router_weights": len(switch.router.weights),
                "output_shape": list(probs.shape), "aux_loss_count": len(aux_losses),
                "dispatch_shape": list(dispatch.shape), "fixed_router_aux_value": round(fixed_aux, 5),
                "fixed_tokens_per_expert": [int(v) for v in tokens_per_expert],
                "fixed_tokens_kept": int(kept.sum()), "fixed_combine_sum": round(float(combine.sum()), 4),
                "final_loss": round(loss[-1], 4), "val_accuracy": round(val_acc, 3)},
    "checks": {"val_accuracy_at_least_0.85": val_acc >= 0.85,
               "loss_falls_by_a_quarter": loss[-1] <= loss[0] * 0.75,
               "one_aux_loss_per_call": len(aux_losses) == 1,
               "aux_loss_at_least_1_and_finite": bool(aux_losses and 0.99 <= aux_losses[0] < 1e6),
               "token_in_at_most_one_slot": bool(slots_per_token.max() <= 1),
               "experts_within_capacity": bool(tokens_per_expert.max() <= capacity),
               "kept_tokens_go_to_top1_expert": bool(np.all(dispatch[kept].sum(-1).argmax(-1) == top1[kept])),
               "combine_is_top1_probability": bool(np.allclose(combine.reshape(n_tokens, -1).sum(-1),
                                                               np.where(kept, router_probs.max(-1), 0.0),
                                                               atol=1e-5)),
               "fixed_aux_matches_numpy": bool(np.isclose(
                   fixed_aux, np.mean(router_probs.mean(0) * np.eye(num_experts)[top1].mean(0)) * num_experts ** 2,
                   rtol=1e-4))},
    "info": {"loss": [round(v, 4) for v in loss], "val_loss": [round(v, 4) for v in history.history["val_loss"]],
             "aux_loss_after_training": [round(v, 4) for v in aux_losses],
             "fixed_router_top1": [int(v) for v in top1]},
}))

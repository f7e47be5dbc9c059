import keras
# Scenario: memory-efficient embeddings for recommendation systems
# (examples/keras_recipes/memory_efficient_embeddings, Keras 3 version), on synthetic user/movie
# ratings with skewed movie popularity in place of MovieLens 1M, and integer ids in place of the
# example's strings: since StringLookup and tf.lookup.StaticHashTable need TensorFlow, a small
# IdLookup layer (ops.take on a numpy table, out-of-vocabulary ids to index 0) stands in for
# StringLookup(vocabulary, mask_token=None, num_oov_indices) and a numpy id-to-block table read
# with ops.take for the StaticHashTable. Exercises the example's embedding_encoder (a named
# Sequential of lookup and Embedding), its baseline model (int Inputs of shape (), two embedding
# encoders, Dot(axes=1), keras.activations.sigmoid(logits) * 5 on symbolic tensors), its
# QREmbedding layer (quotient-remainder trick with ops.floor_divide and ops.mod, two Embedding
# tables of num_buckets = len(user_vocabulary) // 50 rows combined by multiplication) and its
# MDEmbedding layer (frequency blocks of 64/32/16 dimensions, Dense projections or
# Lambda(lambda x: x) for the full-size block, ops.zeros, a float mask of ops.cast(block == idx)
# and a sum), the example's run_experiment (Adam, MeanSquaredError, MeanAbsoluteError(name="mae"),
# fit on dict inputs with validation_data), model.summary with print_fn, and parameter counts of
# both models as the example compares them.
# Thresholds: the memory-efficient model has under 60% of the baseline's parameters; QREmbedding
# and MDEmbedding with fixed weights match their numpy formulas, give every user a distinct
# embedding and zero out nothing but other blocks' rows; both models' final val_loss is under half
# the untrained models' val MSE and below the val MSE of always predicting the training mean.
import json

import numpy as np
from keras import layers
from keras import ops

keras.utils.set_random_seed(3)
rng = np.random.default_rng(0)

"""
## Prepare the data

Synthetic ratings: user and movie latent factors, a rating of 5 * sigmoid(u . m) plus noise,
rounded to 1..5; movies drawn with a Zipf-like popularity, users uniformly.
"""

num_users, num_movies, num_ratings = 2500, 600, 100000
user_factors = rng.normal(0, 1.0, (num_users, 3))
movie_factors = rng.normal(0, 1.0, (num_movies, 3))
user_factors[:, 0], movie_factors[:, 0] = 1.0, rng.normal(0.8, 0.4, num_movies)
popularity = 1.0 / (np.arange(num_movies) + 20.0)
popularity = rng.permutation(popularity / popularity.sum())

user_id = rng.integers(0, num_users, num_ratings).astype("int32")
movie_id = rng.choice(num_movies, num_ratings, p=popularity).astype("int32")
score = (user_factors[user_id] * movie_factors[movie_id]).sum(1)
rating = np.clip(np.round(5 / (1 + np.exp(-score)) + rng.normal(0, 0.3, num_ratings)), 1, 5).astype("float32")

random_selection = rng.random(num_ratings) <= 0.85
train_data = {"user_id": user_id[random_selection], "movie_id": movie_id[random_selection],
              "rating": rating[random_selection]}
eval_data = {"user_id": user_id[~random_selection], "movie_id": movie_id[~random_selection],
             "rating": rating[~random_selection]}

"""
## Define dataset metadata and hyperparameters
"""

user_vocabulary = list(np.unique(user_id))
movie_vocabulary = list(np.unique(movie_id))
id_space = max(num_users, num_movies)
target_feature_name = "rating"
learning_rate = 0.005
batch_size = 128
num_epochs = 3
base_embedding_dim = 64

"""
## Train and evaluate the model
"""


def untrained_val_mse(model):
    eval_features = {"user_id": eval_data["user_id"], "movie_id": eval_data["movie_id"]}
    prediction = model.predict(eval_features, batch_size=1024, verbose=0)
    return float(np.mean((prediction[:, 0] - eval_data[target_feature_name]) ** 2))


def run_experiment(model):
    # Compile the model.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.MeanSquaredError(),
        metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
    )
    features = {"user_id": train_data["user_id"], "movie_id": train_data["movie_id"]}
    eval_features = {"user_id": eval_data["user_id"], "movie_id": eval_data["movie_id"]}
    # Fit the model with the training data.
    history = model.fit(
        features,
        train_data[target_feature_name],
        batch_size=batch_size,
        epochs=num_epochs,
        validation_data=(eval_features, eval_data[target_feature_name]),
        verbose=0,
    )
    return history


"""
## Experiment 1: baseline collaborative filtering model

### Implement embedding encoder
"""


class IdLookup(layers.Layer):
    """Integer-id stand-in for StringLookup(vocabulary, mask_token=None, num_oov_indices)."""

    def __init__(self, vocabulary, num_oov_indices=0, **kwargs):
        # an integer dtype, as StringLookup has: a Sequential starting with it takes int inputs
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        table = np.zeros(id_space, "int32")  # out-of-vocabulary ids map to index 0
        table[np.asarray(vocabulary)] = np.arange(len(vocabulary)) + num_oov_indices
        self.table = table

    def call(self, inputs):
        return ops.take(self.table, inputs, axis=0)


def embedding_encoder(vocabulary, embedding_dim, num_oov_indices=0, name=None):
    return keras.Sequential(
        [
            IdLookup(vocabulary=vocabulary, num_oov_indices=num_oov_indices),
            layers.Embedding(
                input_dim=len(vocabulary) + num_oov_indices, output_dim=embedding_dim
            ),
        ],
        name=f"{name}_embedding" if name else None,
    )


"""
### Implement the baseline model
"""


def create_baseline_model():
    # Receive the user as an input.
    user_input = layers.Input(name="user_id", shape=(), dtype="int32")
    # Get user embedding.
    user_embedding = embedding_encoder(
        vocabulary=user_vocabulary, embedding_dim=base_embedding_dim, name="user"
    )(user_input)

    # Receive the movie as an input.
    movie_input = layers.Input(name="movie_id", shape=(), dtype="int32")
    # Get embedding.
    movie_embedding = embedding_encoder(
        vocabulary=movie_vocabulary, embedding_dim=base_embedding_dim, name="movie"
    )(movie_input)

    # Compute dot product similarity between user and movie embeddings.
    logits = layers.Dot(axes=1, name="dot_similarity")(
        [user_embedding, movie_embedding]
    )
    # Convert to rating scale.
    prediction = keras.activations.sigmoid(logits) * 5
    # Create the model.
    model = keras.Model(
        inputs=[user_input, movie_input], outputs=prediction, name="baseline_model"
    )
    return model


baseline_model = create_baseline_model()
baseline_summary = []
baseline_model.summary(print_fn=lambda line, **kwargs: baseline_summary.append(line))
baseline_params = int(baseline_model.count_params())
baseline_initial_mse = untrained_val_mse(baseline_model)
baseline_history = run_experiment(baseline_model)

"""
## Experiment 2: memory-efficient model

### Implement Quotient-Remainder embedding as a layer
"""


class QREmbedding(keras.layers.Layer):
    def __init__(self, vocabulary, embedding_dim, num_buckets, name=None):
        super().__init__(name=name)
        self.num_buckets = num_buckets

        self.index_lookup = IdLookup(
            vocabulary=vocabulary, num_oov_indices=0
        )
        self.q_embeddings = layers.Embedding(
            num_buckets,
            embedding_dim,
        )
        self.r_embeddings = layers.Embedding(
            num_buckets,
            embedding_dim,
        )

    def call(self, inputs):
        # Get the item index.
        embedding_index = self.index_lookup(inputs)
        # Get the quotient index.
        quotient_index = ops.floor_divide(embedding_index, self.num_buckets)
        # Get the reminder index.
        remainder_index = ops.mod(embedding_index, self.num_buckets)
        # Lookup the quotient_embedding using the quotient_index.
        quotient_embedding = self.q_embeddings(quotient_index)
        # Lookup the remainder_embedding using the remainder_index.
        remainder_embedding = self.r_embeddings(remainder_index)
        # Use multiplication as a combiner operation
        return quotient_embedding * remainder_embedding


"""
### Implement Mixed Dimension embedding as a layer
"""


class MDEmbedding(keras.layers.Layer):
    def __init__(
        self, blocks_vocabulary, blocks_embedding_dims, base_embedding_dim, name=None
    ):
        super().__init__(name=name)
        self.num_blocks = len(blocks_vocabulary)

        # Create vocab to block lookup.
        keys = []
        values = []
        for block_idx, block_vocab in enumerate(blocks_vocabulary):
            keys.extend(block_vocab)
            values.extend([block_idx] * len(block_vocab))
        self.vocab_to_block = np.full(id_space, -1, "int32")
        self.vocab_to_block[np.asarray(keys)] = values

        self.block_embedding_encoders = []
        self.block_embedding_projectors = []

        # Create block embedding encoders and projectors.
        for idx in range(self.num_blocks):
            vocabulary = blocks_vocabulary[idx]
            embedding_dim = blocks_embedding_dims[idx]
            block_embedding_encoder = embedding_encoder(
                vocabulary, embedding_dim, num_oov_indices=1
            )
            self.block_embedding_encoders.append(block_embedding_encoder)
            if embedding_dim == base_embedding_dim:
                self.block_embedding_projectors.append(layers.Lambda(lambda x: x))
            else:
                self.block_embedding_projectors.append(
                    layers.Dense(units=base_embedding_dim)
                )

    def call(self, inputs):
        # Get block index for each input item.
        block_indicies = ops.take(self.vocab_to_block, inputs, axis=0)
        # Initialize output embeddings to zeros.
        embeddings = ops.zeros(shape=(ops.shape(inputs)[0], base_embedding_dim))
        # Generate embeddings from blocks.
        for idx in range(self.num_blocks):
            # Lookup embeddings from the current block.
            block_embeddings = self.block_embedding_encoders[idx](inputs)
            # Project embeddings to base_embedding_dim.
            block_embeddings = self.block_embedding_projectors[idx](block_embeddings)
            # Create a mask to filter out embeddings of items that do not belong to the current block.
            mask = ops.expand_dims(ops.cast(block_indicies == idx, "float32"), 1)
            # Set the embeddings for the items not belonging to the current block to zeros.
            block_embeddings = block_embeddings * mask
            # Add the block embeddings to the final embeddings.
            embeddings += block_embeddings

        return embeddings


"""
### Implement the memory-efficient model
"""

movie_ids, movie_counts = np.unique(train_data["movie_id"], return_counts=True)
sorted_movie_vocabulary = list(movie_ids[np.argsort(-movie_counts, kind="stable")])
sorted_movie_vocabulary += [m for m in movie_vocabulary if m not in set(sorted_movie_vocabulary)]

movie_blocks_vocabulary = [
    sorted_movie_vocabulary[:60],  # high popularity movies block
    sorted_movie_vocabulary[60:250],  # normal popularity movies block
    sorted_movie_vocabulary[250:],  # low popularity movies block
]

movie_blocks_embedding_dims = [64, 32, 16]

user_embedding_num_buckets = len(user_vocabulary) // 50


def create_memory_efficient_model():
    # Take the user as an input.
    user_input = layers.Input(name="user_id", shape=(), dtype="int32")
    # Get user embedding.
    user_embedding = QREmbedding(
        vocabulary=user_vocabulary,
        embedding_dim=base_embedding_dim,
        num_buckets=user_embedding_num_buckets,
        name="user_embedding",
    )(user_input)

    # Take the movie as an input.
    movie_input = layers.Input(name="movie_id", shape=(), dtype="int32")
    # Get embedding.
    movie_embedding = MDEmbedding(
        blocks_vocabulary=movie_blocks_vocabulary,
        blocks_embedding_dims=movie_blocks_embedding_dims,
        base_embedding_dim=base_embedding_dim,
        name="movie_embedding",
    )(movie_input)

    # Compute dot product similarity between user and movie embeddings.
    logits = layers.Dot(axes=1, name="dot_similarity")(
        [user_embedding, movie_embedding]
    )
    # Convert to rating scale.
    prediction = keras.activations.sigmoid(logits) * 5
    # Create the model.
    model = keras.Model(
        inputs=[user_input, movie_input], outputs=prediction, name="baseline_model"
    )
    return model


memory_efficient_model = create_memory_efficient_model()
efficient_summary = []
memory_efficient_model.summary(print_fn=lambda line, **kwargs: efficient_summary.append(line))
efficient_params = int(memory_efficient_model.count_params())
layer_params = {layer.name: int(layer.count_params()) for layer in memory_efficient_model.layers}
efficient_initial_mse = untrained_val_mse(memory_efficient_model)
efficient_history = run_experiment(memory_efficient_model)

"""
## Check the layers on fixed weights
"""


def fixed(shape):
    size = int(np.prod(shape))
    return (np.cos(np.arange(size) * 0.61 + len(shape)) * 0.5).reshape(shape).astype("float32")


qr = QREmbedding(vocabulary=user_vocabulary, embedding_dim=8, num_buckets=user_embedding_num_buckets)
all_users = np.arange(num_users, dtype="int32")
qr(all_users[:4])
qr.q_embeddings.embeddings.assign(fixed((user_embedding_num_buckets, 8)))
qr.r_embeddings.embeddings.assign(fixed((user_embedding_num_buckets, 8)) + 1.0)
qr_out = ops.convert_to_numpy(qr(all_users))
index = np.searchsorted(np.asarray(user_vocabulary), all_users)
qr_expected = (fixed((user_embedding_num_buckets, 8))[index // user_embedding_num_buckets]
               * (fixed((user_embedding_num_buckets, 8)) + 1.0)[index % user_embedding_num_buckets])

md = MDEmbedding(blocks_vocabulary=movie_blocks_vocabulary, blocks_embedding_dims=[8, 4, 2],
                 base_embedding_dim=base_embedding_dim)
all_movies = np.arange(num_movies, dtype="int32")
md(all_movies[:4])
for w in md.trainable_weights:
    w.assign(fixed(w.shape))
md_out = ops.convert_to_numpy(md(all_movies))
md_expected = np.zeros((num_movies, base_embedding_dim), "float32")
for block, dim in zip(movie_blocks_vocabulary, [8, 4, 2]):
    table = fixed((len(block) + 1, dim))
    for position, movie in enumerate(block):
        md_expected[movie] = table[position + 1] @ fixed((dim, base_embedding_dim)) + fixed((base_embedding_dim,))

"""
## Compare
"""

train_mean = float(train_data["rating"].mean())
mean_predictor_mse = float(np.mean((eval_data["rating"] - train_mean) ** 2))
baseline_val = baseline_history.history["val_loss"]
efficient_val = efficient_history.history["val_loss"]

print("RESULT " + json.dumps({
    "figures": {"baseline_params": baseline_params, "memory_efficient_params": efficient_params,
                "layer_params": layer_params,
                "user_embedding_num_buckets": user_embedding_num_buckets,
                "baseline_layer_classes": [layer.__class__.__name__ for layer in baseline_model.layers],
                "efficient_layer_classes": [layer.__class__.__name__ for layer in memory_efficient_model.layers],
                "output_shape": list(memory_efficient_model.output.shape),
                "history_keys": sorted(efficient_history.history),
                "qr_fixed_sum": round(float(qr_out.sum()), 3),
                "md_fixed_abs_sum": round(float(np.abs(md_out).sum()), 3),
                "baseline_val_loss": round(float(baseline_val[-1]), 4),
                "memory_efficient_val_loss": round(float(efficient_val[-1]), 4)},
    "checks": {"memory_efficient_under_60pct_of_baseline": efficient_params < 0.6 * baseline_params,
               "baseline_params_are_the_tables": baseline_params == (len(user_vocabulary) + len(movie_vocabulary))
               * base_embedding_dim,
               "qr_matches_numpy": bool(np.allclose(qr_out, qr_expected, atol=1e-6)),
               "qr_users_distinct": len(np.unique(qr_out.round(6), axis=0)) == num_users,
               "md_matches_numpy": bool(np.allclose(md_out, md_expected, atol=1e-5)),
               "summary_names_layers": any("QREmbedding" in line for line in efficient_summary)
               and any("MDEmbedding" in line for line in efficient_summary)
               and any("Sequential" in line for line in baseline_summary),
               "baseline_val_loss_halves_from_untrained": baseline_val[-1] < 0.5 * baseline_initial_mse,
               "efficient_val_loss_halves_from_untrained": efficient_val[-1] < 0.5 * efficient_initial_mse,
               "baseline_beats_mean_predictor": baseline_val[-1] < mean_predictor_mse,
               "efficient_beats_mean_predictor": efficient_val[-1] < mean_predictor_mse},
    "info": {"baseline_val_loss": [round(v, 4) for v in baseline_val],
             "memory_efficient_val_loss": [round(v, 4) for v in efficient_val],
             "memory_efficient_val_mae": [round(v, 4) for v in efficient_history.history["val_mae"]],
             "mean_predictor_mse": round(mean_predictor_mse, 4),
             "untrained_val_mse": [round(baseline_initial_mse, 4), round(efficient_initial_mse, 4)],
             "param_ratio": round(baseline_params / efficient_params, 2)},
}))

import keras
# Scenario: structured data and recommendations (examples/structured_data/
# structured_data_classification_from_scratch, Keras 3 version, and collaborative_filtering_movielens):
# a heart-disease-like table with numeric columns normalized in the model by adapted Normalization
# layers, a string column one-hot encoded by an adapted StringLookup and an integer column by an
# adapted IntegerLookup (outside the model, as the backend-agnostic example does), a Hashing layer
# for a free string column, an adapted Discretization and CategoryEncoding inside the model, a dict
# of named keras.Input's, fit on a dict of numpy columns with validation_data, and predict on a new
# sample; then RecommenderNet, the Model subclass with user/movie embeddings (he_normal, l2
# regularized), bias embeddings, ops.tensordot and ops.nn.sigmoid, trained with BinaryCrossentropy
# and Adam(learning_rate=0.001) with validation_data, and the top 10 movies for a user by argsort.
# Thresholds: the classifier reaches 0.75 validation accuracy and its loss falls; each
# Discretization bin holds 15-35% of the training values; the recommender's training and
# validation losses fall; the top 10 are distinct unwatched movies with ratings in (0, 1).
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(5)
rng = np.random.default_rng(0)

# ---- structured data classification -----------------------------------------------------------
n, n_train = 400, 320
columns = {
    "age": rng.normal(54, 9, n).round(),
    "trestbps": rng.normal(131, 17, n).round(),
    "thalach": rng.normal(150, 22, n).round(),
    "oldpeak": rng.exponential(1.0, n).round(1),
    "chol": rng.normal(246, 50, n).round(),
    "thal": rng.permutation(np.array(["normal"] * 220 + ["reversible"] * 130 + ["fixed"] * 50)),
    "cp": rng.permutation(np.array([0] * 20 + [1] * 180 + [2] * 100 + [3] * 60 + [4] * 40)),
    "ca": rng.integers(0, 4, n),
    "city": rng.choice(np.array(["austin", "boston", "chicago", "denver", "el paso", "fresno"]), n),
}
logit = (0.08 * (columns["age"] - 54) + 2.0 * (columns["thal"] == "reversible") + 1.2 * (columns["thal"] == "fixed")
         - 1.5 * (columns["cp"] == 1) - 0.04 * (columns["thalach"] - 150) + 1.0 * (columns["oldpeak"] - 1.0)
         + 0.6 * columns["ca"] - 1.2)
target = (logit + rng.normal(0, 0.5, n) > 0).astype("float32")
train_features = {name: values[:n_train] for name, values in columns.items()}
val_features = {name: values[n_train:] for name, values in columns.items()}
y_train, y_val = target[:n_train], target[n_train:]

NUMERIC_FEATURE_NAMES = ["age", "trestbps", "thalach", "oldpeak"]

# categorical columns are encoded before the model (only TensorFlow carries strings through a model)
thal_lookup = layers.StringLookup(output_mode="one_hot")
thal_lookup.adapt(train_features["thal"])
cp_lookup = layers.IntegerLookup(output_mode="one_hot")
cp_lookup.adapt(train_features["cp"])
city_hashing = layers.Hashing(num_bins=8)


def encode_categorical(features):
    features = dict(features)
    features["thal"] = keras.ops.convert_to_numpy(thal_lookup(features["thal"]))
    features["cp"] = keras.ops.convert_to_numpy(cp_lookup(features["cp"]))
    features["city"] = keras.ops.convert_to_numpy(city_hashing(features["city"]))
    return features


def encode_numerical_feature(feature, name):
    normalizer = layers.Normalization()
    normalizer.adapt(np.expand_dims(train_features[name], -1))
    return normalizer(feature)


chol_discretizer = layers.Discretization(num_bins=4)
chol_discretizer.adapt(train_features["chol"])


def create_model():
    inputs, encoded = {}, []
    for name in NUMERIC_FEATURE_NAMES:
        inputs[name] = layers.Input(name=name, shape=(1,), dtype="float32")
        encoded.append(encode_numerical_feature(inputs[name], name))
    for name, lookup in (("thal", thal_lookup), ("cp", cp_lookup)):
        inputs[name] = layers.Input(name=name, shape=(lookup.vocabulary_size(),), dtype="int64")
        encoded.append(inputs[name])
    inputs["chol"] = layers.Input(name="chol", shape=(1,), dtype="float32")
    encoded.append(layers.CategoryEncoding(num_tokens=4, output_mode="one_hot")(chol_discretizer(inputs["chol"])))
    inputs["ca"] = layers.Input(name="ca", shape=(1,), dtype="int64")
    encoded.append(layers.CategoryEncoding(num_tokens=4, output_mode="one_hot")(inputs["ca"]))
    inputs["city"] = layers.Input(name="city", shape=(1,), dtype="int64")
    encoded.append(layers.CategoryEncoding(num_tokens=8, output_mode="one_hot")(inputs["city"]))
    all_features = layers.concatenate(encoded)
    x = layers.Dense(32, activation="relu")(all_features)
    x = layers.Dropout(0.5)(x)
    output = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, output)


model = create_model()
model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
history = model.fit(encode_categorical(train_features), y_train, batch_size=32, epochs=20,
                    validation_data=(encode_categorical(val_features), y_val), verbose=0)

sample = {"age": 60, "trestbps": 145, "thalach": 150, "oldpeak": 2.3, "chol": 233, "thal": "fixed", "cp": 1, "ca": 0,
          "city": "boston"}
input_dict = encode_categorical({name: np.array([value]) for name, value in sample.items()})
predictions = model.predict(input_dict, verbose=0)

thal_vocabulary = [str(v) for v in thal_lookup.get_vocabulary()]
cp_vocabulary = [int(v) for v in cp_lookup.get_vocabulary()]
thal_encoded = keras.ops.convert_to_numpy(thal_lookup(np.array(["fixed", "normal", "unknown"])))
cp_encoded = keras.ops.convert_to_numpy(cp_lookup(np.array([0, 1, 7])))
city_names = ["austin", "boston", "chicago", "denver", "el paso", "fresno"]
city_bins = keras.ops.convert_to_numpy(city_hashing(np.array(city_names)))
chol_bins = keras.ops.convert_to_numpy(chol_discretizer(train_features["chol"]))
bin_shares = [float(np.mean(chol_bins == b)) for b in range(4)]

# ---- collaborative filtering --------------------------------------------------------------------
num_users, num_movies = 150, 100
user_taste = rng.normal(0, 1, num_users)
movie_quality = rng.normal(0, 1, num_movies)
pairs = np.array([(u, m) for u in range(num_users) for m in range(num_movies) if rng.uniform() < 0.5])
ratings = np.clip(np.round(2 * (3.0 + 0.8 * user_taste[pairs[:, 0]] + 0.8 * movie_quality[pairs[:, 1]]
                                + rng.normal(0, 0.3, len(pairs)))) / 2, 0.5, 5.0).astype("float32")
min_rating, max_rating = float(ratings.min()), float(ratings.max())
order = rng.permutation(len(pairs))
x = pairs[order]
y = (ratings[order] - min_rating) / (max_rating - min_rating)
train_indices = int(0.9 * len(x))
x_train, x_val, y_train_cf, y_val_cf = x[:train_indices], x[train_indices:], y[:train_indices], y[train_indices:]

EMBEDDING_SIZE = 50


class RecommenderNet(keras.Model):
    def __init__(self, num_users, num_movies, embedding_size, **kwargs):
        super().__init__(**kwargs)
        self.num_users = num_users
        self.num_movies = num_movies
        self.embedding_size = embedding_size
        self.user_embedding = layers.Embedding(
            num_users,
            embedding_size,
            embeddings_initializer="he_normal",
            embeddings_regularizer=keras.regularizers.l2(1e-6),
        )
        self.user_bias = layers.Embedding(num_users, 1)
        self.movie_embedding = layers.Embedding(
            num_movies,
            embedding_size,
            embeddings_initializer="he_normal",
            embeddings_regularizer=keras.regularizers.l2(1e-6),
        )
        self.movie_bias = layers.Embedding(num_movies, 1)

    def call(self, inputs):
        user_vector = self.user_embedding(inputs[:, 0])
        user_bias = self.user_bias(inputs[:, 0])
        movie_vector = self.movie_embedding(inputs[:, 1])
        movie_bias = self.movie_bias(inputs[:, 1])
        dot_user_movie = ops.tensordot(user_vector, movie_vector, 2)
        # Add all the components (including bias)
        x = dot_user_movie + user_bias + movie_bias
        # The sigmoid activation forces the rating to between 0 and 1
        return ops.nn.sigmoid(x)


recommender = RecommenderNet(num_users, num_movies, EMBEDDING_SIZE)
recommender.compile(loss=keras.losses.BinaryCrossentropy(), optimizer=keras.optimizers.Adam(learning_rate=0.001))
cf_history = recommender.fit(x=x_train, y=y_train_cf, batch_size=64, epochs=5, verbose=0,
                             validation_data=(x_val, y_val_cf))

user_id = 7
movies_watched_by_user = set(pairs[pairs[:, 0] == user_id, 1].tolist())
movies_not_watched = [[m] for m in range(num_movies) if m not in movies_watched_by_user]
user_movie_array = np.hstack(([[user_id]] * len(movies_not_watched), movies_not_watched))
predicted = recommender.predict(user_movie_array, verbose=0).flatten()
top_ratings_indices = predicted.argsort()[-10:][::-1]
recommended_movie_ids = [movies_not_watched[i][0] for i in top_ratings_indices]

loss, val_loss = history.history["loss"], history.history["val_loss"]
cf_loss, cf_val_loss = cf_history.history["loss"], cf_history.history["val_loss"]
print("RESULT " + json.dumps({
    "figures": {"thal_vocabulary": thal_vocabulary, "cp_vocabulary": cp_vocabulary,
                "thal_encoded": thal_encoded.astype(int).tolist(), "cp_encoded": cp_encoded.astype(int).tolist(),
                "city_hash_bins": city_bins.astype(int).tolist(),
                "chol_boundary_count": len(chol_discretizer.bin_boundaries),
                "input_names": sorted(t.name for t in model.inputs),
                "history_keys": sorted(history.history), "prediction_shape": list(predictions.shape),
                "val_accuracy_last": round(float(history.history["val_accuracy"][-1]), 4),
                "params": int(model.count_params()), "recommender_params": int(recommender.count_params()),
                "recommender_regularizer_count": len(recommender.losses),
                "cf_history_keys": sorted(cf_history.history), "predicted_shape": list(predicted.shape),
                "top_k": len(recommended_movie_ids)},
    "checks": {"val_accuracy_at_least_0.75": max(history.history["val_accuracy"][-5:]) >= 0.75,
               "classifier_loss_falls": loss[-1] < loss[0] * 0.8,
               "discretization_bins_balanced": all(0.15 <= s <= 0.35 for s in bin_shares),
               "sample_prediction_is_probability": bool(0.0 <= float(predictions[0, 0]) <= 1.0),
               "recommender_loss_falls": cf_loss[-1] < cf_loss[0] and cf_val_loss[-1] < cf_val_loss[0],
               "top10_distinct_unwatched": len(set(recommended_movie_ids)) == 10
               and not set(recommended_movie_ids) & movies_watched_by_user,
               "ratings_in_unit_interval": bool(np.all((predicted > 0) & (predicted < 1)))},
    "info": {"loss": [round(v, 4) for v in loss[::4]], "val_accuracy": [round(v, 4) for v in history.history["val_accuracy"][::4]],
             "chol_boundaries": [round(float(b), 2) for b in chol_discretizer.bin_boundaries],
             "bin_shares": [round(s, 3) for s in bin_shares], "sample_prediction": round(float(predictions[0, 0]), 4),
             "cf_loss": [round(v, 4) for v in cf_loss], "cf_val_loss": [round(v, 4) for v in cf_val_loss],
             "recommended": recommended_movie_ids},
}))

import keras
# Scenario: structured data learning with TabTransformer (examples/structured_data/tabtransformer,
# Keras 3 version), on a synthetic census-income-like table in place of the UCI download and
# without tf.data: five numeric and eight categorical columns (string values with the census's
# leading spaces) and an instance-weight column fnlwgt, kept as a dict of numpy arrays; the
# example's StringLookup(vocabulary=..., mask_token=None, num_oov_indices=0) per categorical column
# and for the " <=50K" / " >50K" target, applied before the model as its encode_categorical does;
# create_model_inputs (a dict of shape-() float32 keras Inputs), encode_inputs (an Embedding per
# categorical column, ops.expand_dims of each numeric one), create_mlp (a Sequential of
# normalization / Dense / Dropout blocks, LayerNormalization through functools.partial), the
# baseline MLP (concatenate, two gelu feed-forward blocks, a selu MLP with BatchNormalization, a
# sigmoid Dense) and the TabTransformer (ops.stack of the categorical embeddings, the column
# embedding of ops.arange added, three blocks of MultiHeadAttention, Add, LayerNormalization and a
# gelu feed-forward, Flatten, LayerNormalization of the numeric features, the final MLP), both
# trained by run_experiment with AdamW, BinaryCrossentropy and BinaryAccuracy, fit with
# sample_weight and validation_data (x, y, weights), then evaluate.
# Thresholds: both models reach 0.8 validation accuracy (the majority class is about 0.57), their
# training losses fall by a quarter, and the encoded categorical indices are in range.
# Keras's StringLookup needs TensorFlow whatever the backend: the Keras run needs tensorflow-cpu
# on its path (PYTHONPATH=$PWD/.dev:/tmp/tfsite, as for s28_structured_data.py); lamina needs
# nothing more.
import json
import math
from functools import partial

import numpy as np
from keras import layers
from keras import ops

keras.utils.set_random_seed(46)
rng = np.random.default_rng(0)

"""
## Prepare the data: a synthetic census-like table
"""

CSV_HEADER = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income_bracket",
]

VALUES = {
    "workclass": [" Private", " Self-emp", " Gov", " ?"],
    "education": [" HS-grad", " Some-college", " Bachelors", " Masters", " Doctorate", " 11th"],
    "marital_status": [" Married-civ-spouse", " Never-married", " Divorced", " Widowed"],
    "occupation": [" Exec-managerial", " Prof-specialty", " Craft-repair", " Sales", " Adm-clerical",
                   " Other-service"],
    "relationship": [" Husband", " Wife", " Own-child", " Not-in-family"],
    "race": [" White", " Black", " Asian-Pac-Islander"],
    "gender": [" Male", " Female"],
    "native_country": [" United-States", " Mexico", " India", " Canada"],
}
EDUCATION_NUM = {" 11th": 7, " HS-grad": 9, " Some-college": 10, " Bachelors": 13, " Masters": 14, " Doctorate": 16}


def make_table(n):
    table = {name: rng.choice(np.array(values), n) for name, values in VALUES.items()}
    table["age"] = np.clip(rng.normal(39, 13, n), 17, 90).round()
    table["education_num"] = np.array([EDUCATION_NUM[e] for e in table["education"]], "float64")
    table["capital_gain"] = np.where(rng.random(n) < 0.1, rng.exponential(8000, n), 0.0).round()
    table["capital_loss"] = np.where(rng.random(n) < 0.05, rng.normal(1900, 300, n), 0.0).round()
    table["hours_per_week"] = np.clip(rng.normal(40, 12, n), 1, 99).round()
    table["fnlwgt"] = rng.uniform(0.5, 1.5, n).round(3)  # instance weights (rescaled)
    logit = (0.05 * (table["age"] - 39) + 0.45 * (table["education_num"] - 10)
             + 2.0 * (table["marital_status"] == " Married-civ-spouse")
             + 1.2 * np.isin(table["occupation"], [" Exec-managerial", " Prof-specialty"])
             + 3.0 * (table["capital_gain"] > 5000) + 0.04 * (table["hours_per_week"] - 40) - 2.0)
    income = logit + rng.normal(0, 0.3, n) > 0
    table["income_bracket"] = np.where(income, " >50K", " <=50K")
    return {name: table[name] for name in CSV_HEADER}


train_data = make_table(8000)
test_data = make_table(1000)

"""
## Define dataset metadata
"""

# A list of the numerical feature names.
NUMERIC_FEATURE_NAMES = [
    "age",
    "education_num",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
]
# A dictionary of the categorical features and their vocabulary.
CATEGORICAL_FEATURES_WITH_VOCABULARY = {
    name: sorted(list(np.unique(train_data[name]))) for name in VALUES
}
# Name of the column to be used as instances weight.
WEIGHT_COLUMN_NAME = "fnlwgt"
# A list of the categorical feature names.
CATEGORICAL_FEATURE_NAMES = list(CATEGORICAL_FEATURES_WITH_VOCABULARY.keys())
# A list of all the input features.
FEATURE_NAMES = NUMERIC_FEATURE_NAMES + CATEGORICAL_FEATURE_NAMES
# The name of the target feature.
TARGET_FEATURE_NAME = "income_bracket"
# A list of the labels of the target features.
TARGET_LABELS = [" <=50K", " >50K"]

"""
## Configure the hyperparameters
"""

LEARNING_RATE = 0.001
WEIGHT_DECAY = 0.0001
DROPOUT_RATE = 0.2
BATCH_SIZE = 265
NUM_EPOCHS = 15

NUM_TRANSFORMER_BLOCKS = 2  # Number of transformer blocks.
NUM_HEADS = 4  # Number of attention heads.
EMBEDDING_DIMS = 16  # Embedding dimensions of the categorical features.
MLP_HIDDEN_UNITS_FACTORS = [
    2,
    1,
]  # MLP hidden layer units, as factors of the number of inputs.
NUM_MLP_BLOCKS = 2  # Number of MLP blocks in the baseline model.

"""
## Encode the data (the example's prepare_example and encode_categorical, on numpy columns)
"""

target_label_lookup = layers.StringLookup(
    vocabulary=TARGET_LABELS, mask_token=None, num_oov_indices=0
)


def prepare_example(features, target):
    target_index = target_label_lookup(target)
    weights = features.pop(WEIGHT_COLUMN_NAME)
    return features, target_index, weights


lookup_dict = {}
for feature_name in CATEGORICAL_FEATURE_NAMES:
    vocabulary = CATEGORICAL_FEATURES_WITH_VOCABULARY[feature_name]
    # Create a lookup to convert a string values to an integer indices.
    # Since we are not using a mask token, nor expecting any out of vocabulary
    # (oov) token, we set mask_token to None and num_oov_indices to 0.
    lookup = layers.StringLookup(
        vocabulary=vocabulary, mask_token=None, num_oov_indices=0
    )
    lookup_dict[feature_name] = lookup


def encode_categorical(batch_x, batch_y, weights):
    for feature_name in CATEGORICAL_FEATURE_NAMES:
        batch_x[feature_name] = lookup_dict[feature_name](batch_x[feature_name])

    return batch_x, batch_y, weights


def get_arrays(table):
    features = {name: table[name] for name in FEATURE_NAMES + [WEIGHT_COLUMN_NAME]}
    features, target, weights = encode_categorical(*prepare_example(features, table[TARGET_FEATURE_NAME]))
    x = {name: ops.convert_to_numpy(value).astype("float32") for name, value in features.items()}
    return x, ops.convert_to_numpy(target).astype("float32"), np.asarray(weights, "float32")


train_x, train_y, train_w = get_arrays(train_data)
test_x, test_y, test_w = get_arrays(test_data)

"""
## Implement a training and evaluation procedure
"""


def run_experiment(
    model,
    train_arrays,
    test_arrays,
    num_epochs,
    learning_rate,
    weight_decay,
    batch_size,
):
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=weight_decay
    )

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )

    x, y, weights = train_arrays
    print("Start training the model...")
    history = model.fit(
        x, y, sample_weight=weights, batch_size=batch_size, epochs=num_epochs,
        validation_data=test_arrays, verbose=0,
    )
    print("Model training finished")

    _, accuracy = model.evaluate(test_arrays[0], test_arrays[1], sample_weight=test_arrays[2],
                                 batch_size=batch_size, verbose=0)

    print(f"Validation accuracy: {round(accuracy * 100, 2)}%")

    return history, accuracy


"""
## Create model inputs
"""


def create_model_inputs():
    inputs = {}
    for feature_name in FEATURE_NAMES:
        if feature_name in NUMERIC_FEATURE_NAMES:
            inputs[feature_name] = layers.Input(
                name=feature_name, shape=(), dtype="float32"
            )
        else:
            inputs[feature_name] = layers.Input(
                name=feature_name, shape=(), dtype="float32"
            )
    return inputs


"""
## Encode features
"""


def encode_inputs(inputs, embedding_dims):
    encoded_categorical_feature_list = []
    numerical_feature_list = []

    for feature_name in inputs:
        if feature_name in CATEGORICAL_FEATURE_NAMES:
            vocabulary = CATEGORICAL_FEATURES_WITH_VOCABULARY[feature_name]
            # Create an embedding layer with the specified dimensions.
            embedding = layers.Embedding(
                input_dim=len(vocabulary), output_dim=embedding_dims
            )

            # Convert the index values to embedding representations.
            encoded_categorical_feature = embedding(inputs[feature_name])
            encoded_categorical_feature_list.append(encoded_categorical_feature)

        else:
            # Use the numerical features as-is.
            numerical_feature = ops.expand_dims(inputs[feature_name], -1)
            numerical_feature_list.append(numerical_feature)

    return encoded_categorical_feature_list, numerical_feature_list


"""
## Implement an MLP block
"""


def create_mlp(hidden_units, dropout_rate, activation, normalization_layer, name=None):
    mlp_layers = []
    for units in hidden_units:
        mlp_layers.append(normalization_layer()),
        mlp_layers.append(layers.Dense(units, activation=activation))
        mlp_layers.append(layers.Dropout(dropout_rate))

    return keras.Sequential(mlp_layers, name=name)


"""
## Experiment 1: a baseline model
"""


def create_baseline_model(
    embedding_dims, num_mlp_blocks, mlp_hidden_units_factors, dropout_rate
):
    # Create model inputs.
    inputs = create_model_inputs()
    # encode features.
    encoded_categorical_feature_list, numerical_feature_list = encode_inputs(
        inputs, embedding_dims
    )
    # Concatenate all features.
    features = layers.concatenate(
        encoded_categorical_feature_list + numerical_feature_list
    )
    # Compute Feedforward layer units.
    feedforward_units = [features.shape[-1]]

    # Create several feedforwad layers with skip connections.
    for layer_idx in range(num_mlp_blocks):
        features = create_mlp(
            hidden_units=feedforward_units,
            dropout_rate=dropout_rate,
            activation=keras.activations.gelu,
            normalization_layer=layers.LayerNormalization,
            name=f"feedforward_{layer_idx}",
        )(features)

    # Compute MLP hidden_units.
    mlp_hidden_units = [
        factor * features.shape[-1] for factor in mlp_hidden_units_factors
    ]
    # Create final MLP.
    features = create_mlp(
        hidden_units=mlp_hidden_units,
        dropout_rate=dropout_rate,
        activation=keras.activations.selu,
        normalization_layer=layers.BatchNormalization,
        name="MLP",
    )(features)

    # Add a sigmoid as a binary classifer.
    outputs = layers.Dense(units=1, activation="sigmoid", name="sigmoid")(features)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


baseline_model = create_baseline_model(
    embedding_dims=EMBEDDING_DIMS,
    num_mlp_blocks=NUM_MLP_BLOCKS,
    mlp_hidden_units_factors=MLP_HIDDEN_UNITS_FACTORS,
    dropout_rate=DROPOUT_RATE,
)

print("Total model weights:", baseline_model.count_params())

baseline_history, baseline_accuracy = run_experiment(
    model=baseline_model,
    train_arrays=(train_x, train_y, train_w),
    test_arrays=(test_x, test_y, test_w),
    num_epochs=NUM_EPOCHS,
    learning_rate=LEARNING_RATE,
    weight_decay=WEIGHT_DECAY,
    batch_size=BATCH_SIZE,
)

"""
## Experiment 2: TabTransformer
"""


def create_tabtransformer_classifier(
    num_transformer_blocks,
    num_heads,
    embedding_dims,
    mlp_hidden_units_factors,
    dropout_rate,
    use_column_embedding=False,
):
    # Create model inputs.
    inputs = create_model_inputs()
    # encode features.
    encoded_categorical_feature_list, numerical_feature_list = encode_inputs(
        inputs, embedding_dims
    )
    # Stack categorical feature embeddings for the Tansformer.
    encoded_categorical_features = ops.stack(encoded_categorical_feature_list, axis=1)
    # Concatenate numerical features.
    numerical_features = layers.concatenate(numerical_feature_list)

    # Add column embedding to categorical feature embeddings.
    if use_column_embedding:
        num_columns = encoded_categorical_features.shape[1]
        column_embedding = layers.Embedding(
            input_dim=num_columns, output_dim=embedding_dims
        )
        column_indices = ops.arange(start=0, stop=num_columns, step=1)
        encoded_categorical_features = encoded_categorical_features + column_embedding(
            column_indices
        )

    # Create multiple layers of the Transformer block.
    for block_idx in range(num_transformer_blocks):
        # Create a multi-head attention layer.
        attention_output = layers.MultiHeadAttention(
            num_heads=num_heads,
            key_dim=embedding_dims,
            dropout=dropout_rate,
            name=f"multihead_attention_{block_idx}",
        )(encoded_categorical_features, encoded_categorical_features)
        # Skip connection 1.
        x = layers.Add(name=f"skip_connection1_{block_idx}")(
            [attention_output, encoded_categorical_features]
        )
        # Layer normalization 1.
        x = layers.LayerNormalization(name=f"layer_norm1_{block_idx}", epsilon=1e-6)(x)
        # Feedforward.
        feedforward_output = create_mlp(
            hidden_units=[embedding_dims],
            dropout_rate=dropout_rate,
            activation=keras.activations.gelu,
            normalization_layer=partial(
                layers.LayerNormalization, epsilon=1e-6
            ),  # using partial to provide keyword arguments before initialization
            name=f"feedforward_{block_idx}",
        )(x)
        # Skip connection 2.
        x = layers.Add(name=f"skip_connection2_{block_idx}")([feedforward_output, x])
        # Layer normalization 2.
        encoded_categorical_features = layers.LayerNormalization(
            name=f"layer_norm2_{block_idx}", epsilon=1e-6
        )(x)

    # Flatten the "contextualized" embeddings of the categorical features.
    categorical_features = layers.Flatten()(encoded_categorical_features)
    # Apply layer normalization to the numerical features.
    numerical_features = layers.LayerNormalization(epsilon=1e-6)(numerical_features)
    # Prepare the input for the final MLP block.
    features = layers.concatenate([categorical_features, numerical_features])

    # Compute MLP hidden_units.
    mlp_hidden_units = [
        factor * features.shape[-1] for factor in mlp_hidden_units_factors
    ]
    # Create final MLP.
    features = create_mlp(
        hidden_units=mlp_hidden_units,
        dropout_rate=dropout_rate,
        activation=keras.activations.selu,
        normalization_layer=layers.BatchNormalization,
        name="MLP",
    )(features)

    # Add a sigmoid as a binary classifer.
    outputs = layers.Dense(units=1, activation="sigmoid", name="sigmoid")(features)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


tabtransformer_model = create_tabtransformer_classifier(
    num_transformer_blocks=NUM_TRANSFORMER_BLOCKS,
    num_heads=NUM_HEADS,
    embedding_dims=EMBEDDING_DIMS,
    mlp_hidden_units_factors=MLP_HIDDEN_UNITS_FACTORS,
    dropout_rate=DROPOUT_RATE,
    use_column_embedding=True,
)

print("Total model weights:", tabtransformer_model.count_params())

tab_history, tab_accuracy = run_experiment(
    model=tabtransformer_model,
    train_arrays=(train_x, train_y, train_w),
    test_arrays=(test_x, test_y, test_w),
    num_epochs=NUM_EPOCHS,
    learning_rate=LEARNING_RATE,
    weight_decay=WEIGHT_DECAY,
    batch_size=BATCH_SIZE,
)

probabilities = ops.convert_to_numpy(tabtransformer_model.predict(test_x, batch_size=BATCH_SIZE, verbose=0))
majority = float(max(test_y.mean(), 1 - test_y.mean()))
index_ranges_ok = all(
    0 <= train_x[name].min() and train_x[name].max() < len(CATEGORICAL_FEATURES_WITH_VOCABULARY[name])
    for name in CATEGORICAL_FEATURE_NAMES
)
bl, tl = baseline_history.history["loss"], tab_history.history["loss"]

print("RESULT " + json.dumps({
    "figures": {"baseline_params": int(baseline_model.count_params()),
                "tabtransformer_params": int(tabtransformer_model.count_params()),
                "tabtransformer_trainable_params": int(sum(math.prod(w.shape)
                                                           for w in tabtransformer_model.trainable_weights)),
                "input_names": sorted(t.name for t in tabtransformer_model.inputs),
                "named_layers": [layer.name for layer in tabtransformer_model.layers
                                 if layer.name.startswith(("multihead", "skip", "layer_norm", "feedforward", "MLP",
                                                           "sigmoid"))],
                "baseline_mlp_layers": [type(layer).__name__ for layer in baseline_model.get_layer("MLP").layers],
                "feedforward_units": baseline_model.get_layer("feedforward_0").layers[1].units,
                "vocabulary_sizes": {name: lookup_dict[name].vocabulary_size() for name in CATEGORICAL_FEATURE_NAMES},
                "encoded_index_sums": {name: int(train_x[name].sum()) for name in CATEGORICAL_FEATURE_NAMES},
                "positive_labels": int(train_y.sum()), "history_keys": sorted(tab_history.history),
                "prediction_shape": list(probabilities.shape),
                "baseline_accuracy": round(float(baseline_accuracy), 4),
                "tabtransformer_accuracy": round(float(tab_accuracy), 4),
                "baseline_val_loss": round(float(baseline_history.history["val_loss"][-1]), 4),
                "tabtransformer_val_loss": round(float(tab_history.history["val_loss"][-1]), 4)},
    "checks": {"baseline_accuracy_at_least_0.8": baseline_accuracy >= 0.8,
               "tabtransformer_accuracy_at_least_0.8": tab_accuracy >= 0.8,
               "above_majority": min(baseline_accuracy, tab_accuracy) >= majority + 0.1,
               "baseline_loss_falls": bl[-1] < 0.75 * bl[0], "tabtransformer_loss_falls": tl[-1] < 0.75 * tl[0],
               "probabilities_in_0_1": bool(((probabilities > 0) & (probabilities < 1)).all()),
               "indices_in_range": bool(index_ranges_ok)},
    "info": {"majority": round(majority, 4), "baseline_loss": [round(v, 4) for v in bl],
             "tabtransformer_loss": [round(v, 4) for v in tl],
             "tabtransformer_val_accuracy": [round(v, 4) for v in tab_history.history["val_accuracy"]]},
}))

import keras
# Scenario: a functional model with several inputs and outputs (the "Functional API" guide's
# ticket classifier): title and body token sequences through Embedding + LSTM, a binary tag
# vector, concatenated; a "priority" score and a "department" classifier as named outputs;
# compile with per-output losses and loss_weights given as dicts; fit/evaluate with dicts of
# inputs and targets; plus a shared Embedding and a small residual block, as in the guide.
# Thresholds: department accuracy >= 0.8, priority mae <= 0.15.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(12)
rng = np.random.default_rng(0)
num_tags, num_words, num_departments, n = 12, 500, 4, 1200

title_data = rng.integers(1, num_words, (n, 10))
body_data = rng.integers(1, num_words, (n, 40))
tags_data = (rng.random((n, num_tags)) < 0.2).astype("float32")
dept = rng.integers(0, num_departments, n)
title_data[:, 0] = 1 + dept  # the first title word names the department
dept_targets = keras.utils.to_categorical(dept, num_departments)
priority_targets = (0.5 * tags_data[:, :1] + 0.1 * dept[:, None]).astype("float32")

title_input = keras.Input(shape=(None,), name="title")
body_input = keras.Input(shape=(None,), name="body")
tags_input = keras.Input(shape=(num_tags,), name="tags")
shared_embedding = layers.Embedding(num_words, 32)  # one embedding for both texts
title_features = layers.LSTM(32)(shared_embedding(title_input))
body_features = layers.LSTM(16)(shared_embedding(body_input))
x = layers.concatenate([title_features, body_features, tags_input])
block = layers.Dense(60, activation="relu")(x)
x = layers.add([x, block])  # residual connection
priority_pred = layers.Dense(1, name="priority")(x)
department_pred = layers.Dense(num_departments, name="department")(x)
model = keras.Model(inputs=[title_input, body_input, tags_input],
                    outputs={"priority": priority_pred, "department": department_pred})

model.compile(
    optimizer=keras.optimizers.RMSprop(3e-3),
    loss={"priority": keras.losses.MeanSquaredError(),
          "department": keras.losses.CategoricalCrossentropy(from_logits=True)},
    loss_weights={"priority": 1.0, "department": 0.2},
    metrics={"priority": ["mae"], "department": ["accuracy"]},
)
train = slice(0, 1000)
history = model.fit(
    {"title": title_data[train], "body": body_data[train], "tags": tags_data[train]},
    {"priority": priority_targets[train], "department": dept_targets[train]},
    epochs=6, batch_size=32, verbose=2,
)
test = slice(1000, n)
scores = model.evaluate({"title": title_data[test], "body": body_data[test], "tags": tags_data[test]},
                        {"priority": priority_targets[test], "department": dept_targets[test]},
                        return_dict=True, verbose=0)
preds = model.predict({"title": title_data[test], "body": body_data[test], "tags": tags_data[test]}, verbose=0)
print("evaluate:", scores)
# the total loss is the weighted sum of the two output losses
weighted = scores["priority_loss"] + 0.2 * scores["department_loss"]

result = {
    "figures": {
        "loss": float(scores["loss"]),
        "department_accuracy": float(scores["department_accuracy"]),
        "priority_mae": float(scores["priority_mae"]),
        "evaluate_keys": sorted(scores),
        "history_keys": sorted(history.history),
        "predict_keys_and_shapes": {k: list(v.shape) for k, v in sorted(preds.items())},
        "input_names": [t.name for t in model.inputs],
        "weights": len(model.weights),
    },
    "checks": {
        "department_accuracy >= 0.8": scores["department_accuracy"] >= 0.8,
        "priority_mae <= 0.15": scores["priority_mae"] <= 0.15,
        "loss is the loss_weights sum": bool(np.isclose(scores["loss"], weighted, rtol=1e-3)),
    },
}
print("RESULT " + json.dumps(result))

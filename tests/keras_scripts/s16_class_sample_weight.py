import keras
# Scenario: class and sample weighting (the "Training & evaluation with the built-in methods"
# guide): fit(class_weight={class: weight}) on an imbalanced problem, the same weights given as
# fit(sample_weight=array), and evaluate(sample_weight=...). Thresholds: class weighting raises
# the rare class's recall to >= 0.75 (from below it without weights), class_weight and the
# equivalent sample_weight give the same training losses (rtol 1e-4), and the weighted evaluate
# loss equals numpy's weighted mean.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(16)
rng = np.random.default_rng(0)
n = 2000
x = rng.standard_normal((n, 6)).astype("float32")
score = x[:, 0] + 0.5 * x[:, 1] + 0.7 * rng.standard_normal(n)
y = (score > 1.6).astype("int64")  # about 8% positives
x_test = rng.standard_normal((600, 6)).astype("float32")
y_test = (x_test[:, 0] + 0.5 * x_test[:, 1] + 0.7 * rng.standard_normal(600) > 1.6).astype("int64")


def get_model():
    model = keras.Sequential([keras.Input(shape=(6,)), layers.Dense(16, activation="relu"),
                              layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
                  metrics=["sparse_categorical_accuracy"])
    return model


def recall(model):
    pred = np.argmax(model.predict(x_test, verbose=0), axis=1)
    return float(np.mean(pred[y_test == 1] == 1))


start = get_model()
initial_weights = start.get_weights()
positives = float(y.mean())
class_weight = {0: 1.0, 1: float((1 - positives) / positives)}

histories, recalls = {}, {}
for name, kwargs in [("none", {}), ("class_weight", {"class_weight": class_weight}),
                     ("sample_weight", {"sample_weight": np.where(y == 1, class_weight[1], 1.0)})]:
    model = get_model()
    model.set_weights(initial_weights)
    histories[name] = model.fit(x, y, batch_size=64, epochs=6, shuffle=False, verbose=0, **kwargs).history["loss"]
    recalls[name] = recall(model)

test_weights = np.where(y_test == 1, 3.0, 1.0).astype("float32")
weighted_loss = model.evaluate(x_test, y_test, sample_weight=test_weights, verbose=0)[0]
probs = model.predict(x_test, verbose=0)
per_sample = -np.log(np.clip(probs[np.arange(len(y_test)), y_test], 1e-7, 1.0))
numpy_weighted = float(np.sum(per_sample * test_weights) / len(y_test))
print(f"positives {positives:.3f}, class_weight {class_weight}, recall {recalls}, "
      f"weighted evaluate loss {weighted_loss:.5f} (numpy {numpy_weighted:.5f})")

result = {
    "figures": {
        "positives": positives,
        "recall_class_weight": recalls["class_weight"],
        "final_loss_class_weight": float(histories["class_weight"][-1]),
        "weighted_evaluate_loss": float(weighted_loss),
    },
    "info": {"recall_without_weights": recalls["none"]},
    "checks": {
        "class_weight raises rare-class recall to >= 0.75": recalls["class_weight"] >= 0.75 > recalls["none"],
        "class_weight equals sample_weight": bool(np.allclose(histories["class_weight"], histories["sample_weight"],
                                                              rtol=1e-4)),
        "weighted evaluate equals numpy": bool(np.isclose(weighted_loss, numpy_weighted, rtol=1e-3)),
    },
}
print("RESULT " + json.dumps(result))

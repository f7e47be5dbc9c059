import keras
# Scenario: point cloud classification with PointNet (examples/vision/pointnet, Keras 3 version),
# on synthetic point clouds of three shapes (points on a sphere, on a cube's surface, on a
# cylinder's side) in place of ModelNet10: the example's augment (uniform jitter and a shuffle of
# the points, here in numpy), its conv_bn (Conv1D(kernel_size=1, padding="valid"),
# BatchNormalization(momentum=0.0), relu Activation) and dense_bn helpers, its
# OrthogonalRegularizer (a keras.regularizers.Regularizer subclass with __call__ of ops.reshape,
# ops.tensordot(axes=(2, 2)), ops.eye and ops.sum, and a get_config so that it saves), its tnet
# (GlobalMaxPooling1D, a Dense with kernel_initializer="zeros", a Constant(np.eye(...).flatten())
# bias initializer and the regularizer as activity_regularizer, Reshape, Dot(axes=(2, 1))), the
# whole network with Dropout(0.3) and a softmax head, compiled with
# "sparse_categorical_crossentropy", Adam and "sparse_categorical_accuracy", fit with
# validation_data; then model.save to .keras and keras.models.load_model.
# Thresholds: test accuracy at least 0.8 (chance 1/3); the training loss falls by a third; at
# initialisation both t-nets are the identity (the first Dot returns its input) and the
# activity-regularisation losses equal the regulariser applied to identity matrices divided by
# the batch size; the reloaded model predicts the same, carries an OrthogonalRegularizer with the
# same config, and adds the same regularisation losses.
import json
import os
import tempfile

import numpy as np
from keras import layers
from keras import ops

keras.utils.set_random_seed(1234)
rng = np.random.default_rng(0)

"""
## Make the dataset
"""

NUM_POINTS = 64
NUM_CLASSES = 3
BATCH_SIZE = 32
CLASS_MAP = {0: "sphere", 1: "cube", 2: "cylinder"}


def sample_shape(kind, num_points):
    if kind == 0:  # sphere
        p = rng.normal(size=(num_points, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
    elif kind == 1:  # cube surface
        p = rng.uniform(-1, 1, (num_points, 3))
        axis = rng.integers(0, 3, num_points)
        p[np.arange(num_points), axis] = rng.choice([-1.0, 1.0], num_points)
    else:  # cylinder side
        theta = rng.uniform(0, 2 * np.pi, num_points)
        p = np.stack([np.cos(theta), np.sin(theta), rng.uniform(-1, 1, num_points)], axis=1)
    return p * rng.uniform(0.7, 1.3)


def parse_dataset(num_samples, num_points=NUM_POINTS):
    labels = rng.integers(0, NUM_CLASSES, num_samples)
    points = np.stack([sample_shape(k, num_points) for k in labels])
    return points.astype("float32"), labels


def augment(points):
    # jitter points
    points = points + rng.uniform(-0.005, 0.005, points.shape).astype("float32")
    # shuffle points
    for cloud in points:
        rng.shuffle(cloud)
    return points


train_points, train_labels = parse_dataset(192)
test_points, test_labels = parse_dataset(64)
train_points = augment(train_points)

"""
### Build a model
"""


def conv_bn(x, filters):
    x = layers.Conv1D(filters, kernel_size=1, padding="valid")(x)
    x = layers.BatchNormalization(momentum=0.0)(x)
    return layers.Activation("relu")(x)


def dense_bn(x, filters):
    x = layers.Dense(filters)(x)
    x = layers.BatchNormalization(momentum=0.0)(x)
    return layers.Activation("relu")(x)


@keras.saving.register_keras_serializable(package="pointnet")
class OrthogonalRegularizer(keras.regularizers.Regularizer):
    def __init__(self, num_features, l2reg=0.001):
        self.num_features = num_features
        self.l2reg = l2reg
        self.eye = ops.eye(num_features)

    def __call__(self, x):
        x = ops.reshape(x, (-1, self.num_features, self.num_features))
        xxt = ops.tensordot(x, x, axes=(2, 2))
        xxt = ops.reshape(xxt, (-1, self.num_features, self.num_features))
        return ops.sum(self.l2reg * ops.square(xxt - self.eye))

    def get_config(self):
        return {"num_features": self.num_features, "l2reg": self.l2reg}


def tnet(inputs, num_features):
    # Initialise bias as the identity matrix
    bias = keras.initializers.Constant(np.eye(num_features).flatten())
    reg = OrthogonalRegularizer(num_features)

    x = conv_bn(inputs, 32)
    x = conv_bn(x, 64)
    x = conv_bn(x, 512)
    x = layers.GlobalMaxPooling1D()(x)
    x = dense_bn(x, 256)
    x = dense_bn(x, 128)
    x = layers.Dense(
        num_features * num_features,
        kernel_initializer="zeros",
        bias_initializer=bias,
        activity_regularizer=reg,
    )(x)
    feat_T = layers.Reshape((num_features, num_features))(x)
    # Apply affine transformation to input features
    return layers.Dot(axes=(2, 1))([inputs, feat_T])


inputs = keras.Input(shape=(NUM_POINTS, 3))

x = tnet(inputs, 3)
first_transform = x
x = conv_bn(x, 32)
x = conv_bn(x, 32)
x = tnet(x, 32)
x = conv_bn(x, 32)
x = conv_bn(x, 64)
x = conv_bn(x, 512)
x = layers.GlobalMaxPooling1D()(x)
x = dense_bn(x, 256)
x = layers.Dropout(0.3)(x)
x = dense_bn(x, 128)
x = layers.Dropout(0.3)(x)

outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)

model = keras.Model(inputs=inputs, outputs=outputs, name="pointnet")

# At initialisation both t-nets output identity matrices: the first Dot returns its input, and
# the activity-regularisation losses are the regulariser of a batch of identities.
probe = test_points[:4]
transformed = ops.convert_to_numpy(keras.Model(inputs, first_transform)(probe))
model(probe)
initial_losses = [float(ops.convert_to_numpy(v)) for v in model.losses]
expected_losses = [float(ops.convert_to_numpy(OrthogonalRegularizer(n)(np.tile(np.eye(n, dtype="float32").reshape(1, -1), (4, 1)))))
                   / 4 for n in (3, 32)]

# The regulariser and the Dot layer on fixed values.
fixed = np.linspace(-0.5, 1.2, 2 * 9, dtype="float32").reshape(2, 9)
reg_value = float(ops.convert_to_numpy(OrthogonalRegularizer(3)(fixed)))
dot_value = ops.convert_to_numpy(layers.Dot(axes=(2, 1))([np.ones((2, 5, 3), "float32"), fixed.reshape(2, 3, 3)]))

"""
### Train model
"""

model.compile(
    loss="sparse_categorical_crossentropy",
    optimizer=keras.optimizers.Adam(learning_rate=0.001),
    metrics=["sparse_categorical_accuracy"],
)

history = model.fit(train_points, train_labels, batch_size=BATCH_SIZE, epochs=8,
                    validation_data=(test_points, test_labels), verbose=0)
test_loss, test_accuracy = model.evaluate(test_points, test_labels, batch_size=BATCH_SIZE, verbose=0)

"""
## Save and reload
"""

path = os.path.join(tempfile.mkdtemp(), "pointnet.keras")
model.save(path)
reloaded = keras.models.load_model(path)

preds = model.predict(test_points[:8], verbose=0)
preds_reloaded = reloaded.predict(test_points[:8], verbose=0)
model(test_points[:8])
reloaded(test_points[:8])
losses = [float(ops.convert_to_numpy(v)) for v in model.losses]
losses_reloaded = [float(ops.convert_to_numpy(v)) for v in reloaded.losses]
regularizers = [layer.activity_regularizer for layer in reloaded.layers if layer.activity_regularizer is not None]
predicted = [CLASS_MAP[int(i)] for i in np.argmax(preds, -1)]

print("RESULT " + json.dumps({
    "figures": {"params": int(model.count_params()), "layers": len(model.layers),
                "output_shape": list(model.output.shape),
                "layer_kinds": sorted({layer.__class__.__name__ for layer in model.layers}),
                "initial_regularization_losses": [round(v, 6) for v in initial_losses],
                "regularizer_on_fixed": round(reg_value, 6), "dot_on_fixed_sum": round(float(dot_value.sum()), 4),
                "dot_on_fixed_shape": list(dot_value.shape),
                "reloaded_regularizers": [[r.__class__.__name__, r.get_config()] for r in regularizers],
                "history_keys": sorted(history.history),
                "final_loss": round(float(history.history["loss"][-1]), 4),
                "test_accuracy": round(float(test_accuracy), 4)},
    "checks": {"test_accuracy_at_least_0.8": test_accuracy >= 0.8,
               "loss_falls_by_a_third": history.history["loss"][-1] <= history.history["loss"][0] * 2 / 3,
               "initial_tnet_is_identity": bool(np.allclose(transformed, probe, atol=1e-5)),
               "initial_losses_are_identity_regularization": bool(np.allclose(initial_losses, expected_losses, rtol=1e-5)),
               "reloaded_predicts_the_same": bool(np.allclose(preds, preds_reloaded, atol=1e-5)),
               "reloaded_regularizers_round_trip": len(regularizers) == 2 and all(
                   isinstance(r, OrthogonalRegularizer) for r in regularizers)
               and [r.get_config() for r in regularizers] == [{"num_features": 3, "l2reg": 0.001},
                                                               {"num_features": 32, "l2reg": 0.001}],
               "reloaded_adds_the_same_losses": len(losses) == 2 and bool(np.allclose(losses, losses_reloaded, rtol=1e-5))},
    "info": {"loss": [round(v, 4) for v in history.history["loss"]],
             "val_accuracy": [round(v, 4) for v in history.history["val_sparse_categorical_accuracy"]],
             "test_loss": round(float(test_loss), 4), "predicted": predicted,
             "labels": [CLASS_MAP[int(i)] for i in test_labels[:8]], "losses": losses},
}))

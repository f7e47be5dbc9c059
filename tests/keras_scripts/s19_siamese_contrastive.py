import keras
# Scenario: a siamese network with a contrastive loss (examples/vision/siamese_contrastive): one
# embedding tower shared by two inputs, a Lambda computing the euclidean distance with keras.ops
# and keras.backend.epsilon(), images fed as (n, 28, 28) to Inputs of shape (28, 28, 1) (Keras adds
# the channel axis), a closure loss; then keras.ops applied straight to the symbolic tensors of a
# functional model. Thresholds: the pair accuracy on held-out pairs >= 0.8; the ops model's
# outputs equal numpy's on the same data.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(3)
rng = np.random.default_rng(0)

# two "classes" of 28 x 28 images: a bright top half or a bright bottom half, plus noise
def images(n, cls):
    x = rng.random((n, 28, 28)).astype("float32") * 0.3
    x[cls == 0, :14] += 0.7
    x[cls == 1, 14:] += 0.7
    return x


def pairs(n):
    c1 = rng.integers(0, 2, n)
    same = rng.integers(0, 2, n)
    c2 = np.where(same == 1, c1, 1 - c1)
    return images(n, c1), images(n, c2), same.astype("float32")   # label 1: the same class


x1, x2, labels = pairs(512)
v1, v2, val_labels = pairs(128)


def euclidean_distance(vects):
    x, y = vects
    sum_square = ops.sum(ops.square(x - y), axis=1, keepdims=True)
    return ops.sqrt(ops.maximum(sum_square, keras.backend.epsilon()))


inp = layers.Input((28, 28, 1))
x = layers.BatchNormalization()(inp)
x = layers.Conv2D(4, (5, 5), activation="tanh")(x)
x = layers.AveragePooling2D(pool_size=(2, 2))(x)
x = layers.Conv2D(8, (5, 5), activation="tanh")(x)
x = layers.AveragePooling2D(pool_size=(2, 2))(x)
x = layers.Flatten()(x)
x = layers.BatchNormalization()(x)
x = layers.Dense(10, activation="tanh")(x)
embedding_network = keras.Model(inp, x)

input_1 = layers.Input((28, 28, 1))
input_2 = layers.Input((28, 28, 1))
tower_1 = embedding_network(input_1)
tower_2 = embedding_network(input_2)
merge_layer = layers.Lambda(euclidean_distance, output_shape=(1,))([tower_1, tower_2])
normal_layer = layers.BatchNormalization()(merge_layer)
output_layer = layers.Dense(1, activation="sigmoid")(normal_layer)
siamese = keras.Model(inputs=[input_1, input_2], outputs=output_layer)


def loss(margin=1):
    def contrastive_loss(y_true, y_pred):
        square_pred = ops.square(y_pred)
        margin_square = ops.square(ops.maximum(margin - (y_pred), 0))
        return ops.mean((1 - y_true) * square_pred + (y_true) * margin_square)
    return contrastive_loss


siamese.compile(loss=loss(margin=1), optimizer="RMSprop", metrics=["accuracy"])
history = siamese.fit([x1, x2], labels, validation_data=([v1, v2], val_labels), batch_size=16, epochs=6, verbose=0)
test_loss, test_accuracy = siamese.evaluate([v1, v2], val_labels, verbose=0)
pred = siamese.predict([v1[:4], v2[:4]], verbose=0)

# keras.ops on the symbolic tensors of a functional model
a, b = keras.Input((3,)), keras.Input((3,))
c = ops.concatenate([a, ops.square(b)], axis=-1)
d = ops.mean(c, axis=-1, keepdims=True) + ops.max(c, axis=-1, keepdims=True)
ops_model = keras.Model([a, b], [c, d])
xa, xb = rng.standard_normal((5, 3)).astype("float32"), rng.standard_normal((5, 3)).astype("float32")
got_c, got_d = ops_model.predict([xa, xb], verbose=0)
want_c = np.concatenate([xa, xb ** 2], -1)
ops_error = float(max(np.abs(got_c - want_c).max(),
                      np.abs(got_d - (want_c.mean(-1, keepdims=True) + want_c.max(-1, keepdims=True))).max()))

print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(history.history), "pred_shape": list(pred.shape),
                "test_accuracy": float(test_accuracy), "ops_shapes": [list(c.shape), list(d.shape)]},
    "checks": {"test_accuracy_at_least_0.8": float(test_accuracy) >= 0.8, "ops_model_equals_numpy": ops_error < 1e-5},
    "info": {"test_loss": float(test_loss), "epsilon": keras.backend.epsilon(), "ops_error": ops_error},
}))

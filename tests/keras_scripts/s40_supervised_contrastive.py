import keras
# Scenario: supervised contrastive learning (examples/vision/supervised-contrastive-learning,
# Keras 3 version), on small synthetic 32x32 colour images of 4 classes in place of CIFAR-10: a
# data_augmentation Sequential (Normalization adapted on the training images, RandomFlip
# ("horizontal"), RandomRotation(0.02)) inside an encoder around
# keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=..., pooling="avg"),
# the example's SupervisedContrastiveLoss (a keras.losses.Loss subclass overriding call with
# ops.normalize, ops.matmul/ops.transpose logits over a temperature, an ops.equal positives mask
# without the ops.eye diagonal, log-softmax over the other samples) used to pretrain the encoder
# under the projection head (Dense relu), then create_classifier(encoder, trainable=False): the
# encoder's layers frozen under Dropout/Dense relu/Dropout/Dense softmax, Adam,
# SparseCategoricalCrossentropy and SparseCategoricalAccuracy. Also the loss of the first Keras 3
# port of the example, a Loss subclass overriding __call__ itself (keras.utils.normalize(order=2),
# ops.divide(ops.matmul(...), temperature), an npairs loss built on ops.categorical_crossentropy
# (from_logits=True); its labels kept as a column, since ops.squeeze then ops.transpose of a 1-D
# vector gives no pairs), evaluated on fixed vectors. Thresholds: both losses equal a numpy
# computation on fixed vectors (1e-4); the contrastive loss falls by a quarter in pretraining;
# afterwards same-class embeddings are closer (cosine) than other-class ones; the frozen encoder's
# weights do not move while the classifier trains, which has 4 trainable weights; test accuracy
# beats chance (0.25) by 0.3.
import json

import numpy as np
from keras import layers
from keras import ops

keras.utils.set_random_seed(11)
rng = np.random.default_rng(0)

num_classes = 4
input_shape = (32, 32, 3)

colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [220, 220, 40]], "float32")


def make_images(n):
    labels = rng.integers(0, num_classes, n)
    images = colours[labels][:, None, None, :] + rng.normal(0, 40, (n, *input_shape))
    return np.clip(images, 0, 255).astype("uint8"), labels.reshape(-1, 1).astype("uint8")


# Load the train and test data splits (cifar10-like: uint8 images, labels of shape (n, 1))
(x_train, y_train), (x_test, y_test) = make_images(256), make_images(128)

data_augmentation = keras.Sequential(
    [
        layers.Normalization(),
        layers.RandomFlip("horizontal"),
        layers.RandomRotation(0.02),
    ]
)

# Setting the state of the normalization layer.
data_augmentation.layers[0].adapt(x_train)


def create_encoder():
    resnet = keras.applications.ResNet50V2(
        include_top=False, weights=None, input_shape=input_shape, pooling="avg"
    )

    inputs = keras.Input(shape=input_shape)
    augmented = data_augmentation(inputs)
    outputs = resnet(augmented)
    model = keras.Model(inputs=inputs, outputs=outputs, name="cifar10-encoder")
    return model


learning_rate = 0.001
batch_size = 64
hidden_units = 64
projection_units = 32
num_epochs = 6
dropout_rate = 0.5
temperature = 0.05


def create_classifier(encoder, trainable=True):
    for layer in encoder.layers:
        layer.trainable = trainable

    inputs = keras.Input(shape=input_shape)
    features = encoder(inputs)
    features = layers.Dropout(dropout_rate)(features)
    features = layers.Dense(hidden_units, activation="relu")(features)
    features = layers.Dropout(dropout_rate)(features)
    outputs = layers.Dense(num_classes, activation="softmax")(features)

    model = keras.Model(inputs=inputs, outputs=outputs, name="cifar10-classifier")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    return model


class SupervisedContrastiveLoss(keras.losses.Loss):
    def __init__(self, temperature=0.05, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature

    def call(self, labels, feature_vectors):
        feature_vectors = ops.normalize(feature_vectors, axis=1)

        logits = ops.divide(
            ops.matmul(feature_vectors, ops.transpose(feature_vectors)),
            self.temperature,
        )

        # Create a mask to find positive pairs (images of same class)
        labels = ops.cast(labels, "int32")
        labels = ops.reshape(labels, (-1, 1))
        mask = ops.cast(ops.equal(labels, ops.transpose(labels)), "float32")

        batch_size = ops.shape(logits)[0]
        logits_mask = 1.0 - ops.eye(batch_size)
        mask = mask * logits_mask

        logits_max = ops.max(logits, axis=1, keepdims=True)
        logits_exp = ops.exp(logits - logits_max) * logits_mask

        log_prob = (logits - logits_max) - ops.log(
            ops.sum(logits_exp, axis=1, keepdims=True) + 1e-8
        )

        mean_log_prob_pos = ops.sum(mask * log_prob, axis=1) / (
            ops.sum(mask, axis=1) + 1e-8
        )

        return ops.subtract(0.0, ops.mean(mean_log_prob_pos))


# The first Keras 3 port of the example: a Loss overriding __call__ with an npairs loss.
def npairs_loss(y_true, y_pred):
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, y_pred.dtype)
    y_true = ops.cast(ops.equal(y_true, ops.transpose(y_true)), y_pred.dtype)
    y_true /= ops.sum(y_true, 1, keepdims=True)
    loss = ops.categorical_crossentropy(y_true, y_pred, from_logits=True)

    return ops.mean(loss)


class NPairsSupervisedContrastiveLoss(keras.losses.Loss):
    def __init__(self, temperature=1, name=None):
        super().__init__(name=name)
        self.temperature = temperature

    def __call__(self, labels, feature_vectors, sample_weight=None):
        # Normalize feature vectors
        feature_vectors_normalized = keras.utils.normalize(
            feature_vectors, axis=1, order=2
        )
        # Compute logits
        logits = ops.divide(
            ops.matmul(
                feature_vectors_normalized,
                ops.transpose(feature_vectors_normalized),
            ),
            self.temperature,
        )
        return npairs_loss(ops.reshape(labels, (-1, 1)), logits)


def add_projection_head(encoder):
    inputs = keras.Input(shape=input_shape)
    features = encoder(inputs)
    outputs = layers.Dense(projection_units, activation="relu")(features)
    model = keras.Model(
        inputs=inputs, outputs=outputs, name="cifar-encoder_with_projection-head"
    )
    return model


# both losses on fixed vectors, against numpy
fixed_vectors = rng.normal(size=(12, 6)).astype("float32")
fixed_labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 3, 3, 2, 0]).reshape(-1, 1)
supcon_fixed = float(SupervisedContrastiveLoss(temperature)(fixed_labels, fixed_vectors))
npairs_fixed = float(NPairsSupervisedContrastiveLoss(temperature)(fixed_labels, fixed_vectors))


def numpy_losses(v, y, t):
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    logits = v @ v.T / t
    same = (y == y.T).astype("float64")
    off = 1.0 - np.eye(len(v))
    z = logits - logits.max(1, keepdims=True)
    log_prob = z - np.log((np.exp(z) * off).sum(1, keepdims=True) + 1e-8)  # the example's 1e-8 counts here
    supcon = -np.mean(((same * off) * log_prob).sum(1) / ((same * off).sum(1) + 1e-8))
    target = same / same.sum(1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(1, keepdims=True))
    npairs = np.mean(-(target * log_softmax).sum(1))
    return supcon, npairs


supcon_ref, npairs_ref = numpy_losses(fixed_vectors.astype("float64"), fixed_labels, temperature)

encoder = create_encoder()
encoder_params = int(encoder.count_params())

encoder_with_projection_head = add_projection_head(encoder)
encoder_with_projection_head.compile(
    optimizer=keras.optimizers.Adam(learning_rate),
    loss=SupervisedContrastiveLoss(temperature),
)

pretrain_history = encoder_with_projection_head.fit(
    x=x_train, y=y_train, batch_size=batch_size, epochs=num_epochs, verbose=0
)

# embeddings of the test images: same-class pairs against other-class pairs (cosine)
embeddings = encoder.predict(x_test, verbose=0)
unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
cosine = unit @ unit.T
same_class = (y_test == y_test.T) & ~np.eye(len(y_test), dtype=bool)
other_class = y_test != y_test.T
within, between = float(cosine[same_class].mean()), float(cosine[other_class].mean())

classifier = create_classifier(encoder, trainable=False)
encoder_weights_before = [keras.ops.convert_to_numpy(w) for w in encoder.weights]

history = classifier.fit(x=x_train, y=y_train, batch_size=batch_size, epochs=num_epochs, verbose=0)

accuracy = classifier.evaluate(x_test, y_test, verbose=0)[1]
encoder_weights_after = [keras.ops.convert_to_numpy(w) for w in encoder.weights]
pre_loss = pretrain_history.history["loss"]

print("RESULT " + json.dumps({
    "figures": {"encoder_params": encoder_params, "encoder_output_shape": list(encoder.output.shape),
                "projection_output_shape": list(encoder_with_projection_head.output.shape),
                "encoder_layers": [l.name for l in encoder.layers],
                "classifier_params": int(classifier.count_params()),
                "classifier_trainable_weights": len(classifier.trainable_weights),
                "classifier_non_trainable_weights": len(classifier.non_trainable_weights),
                "classifier_history_keys": sorted(history.history),
                "supcon_fixed": round(supcon_fixed, 5), "npairs_fixed": round(npairs_fixed, 5),
                "normalization_mean": [round(float(v), 3) for v in np.ravel(data_augmentation.layers[0].mean)],
                "final_pretrain_loss": round(pre_loss[-1], 4),
                "final_classifier_loss": round(history.history["loss"][-1], 4)},
    "checks": {"supcon_matches_numpy": bool(abs(supcon_fixed - supcon_ref) < 1e-4),
               "npairs_matches_numpy": bool(abs(npairs_fixed - npairs_ref) < 1e-4),
               "contrastive_loss_falls_by_a_quarter": pre_loss[-1] < 0.75 * pre_loss[0],
               "same_class_embeddings_closer": within > between,
               "classifier_has_4_trainable_weights": len(classifier.trainable_weights) == 4,
               "frozen_encoder_unchanged": all(np.array_equal(a, b) for a, b in
                                               zip(encoder_weights_before, encoder_weights_after)),
               "test_accuracy_above_chance_plus_0.3": bool(accuracy > 0.25 + 0.3)},
    "info": {"pretrain_loss": [round(v, 4) for v in pre_loss],
             "classifier_loss": [round(v, 4) for v in history.history["loss"]],
             "test_accuracy": round(float(accuracy), 4),
             "cosine_within": round(within, 4), "cosine_between": round(between, 4),
             "supcon_ref": round(float(supcon_ref), 5), "npairs_ref": round(float(npairs_ref), 5)},
}))

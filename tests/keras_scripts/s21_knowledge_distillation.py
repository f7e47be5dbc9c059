import keras
# Scenario: knowledge distillation (examples/vision/knowledge_distillation, Keras 3 version): a
# Model subclass that overrides compile() (extra arguments) and compute_loss() (the teacher's
# softened predictions against the student's, plus the student's own loss), trained with fit and
# evaluated with the compiled metric; a student trained from scratch (clone_model) for comparison.
# Thresholds: the distilled student's accuracy >= 0.7 and its loss falls by two thirds; its history
# holds loss and the metric.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(5)
rng = np.random.default_rng(0)


class Distiller(keras.Model):
    def __init__(self, student, teacher):
        super().__init__()
        self.teacher = teacher
        self.student = student

    def compile(self, optimizer, metrics, student_loss_fn, distillation_loss_fn, alpha=0.1, temperature=3):
        super().compile(optimizer=optimizer, metrics=metrics)
        self.student_loss_fn = student_loss_fn
        self.distillation_loss_fn = distillation_loss_fn
        self.alpha = alpha
        self.temperature = temperature

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, allow_empty=False):
        teacher_pred = self.teacher(x, training=False)
        student_loss = self.student_loss_fn(y, y_pred)
        distillation_loss = self.distillation_loss_fn(
            ops.softmax(teacher_pred / self.temperature, axis=1),
            ops.softmax(y_pred / self.temperature, axis=1),
        ) * (self.temperature ** 2)
        return self.alpha * student_loss + (1 - self.alpha) * distillation_loss

    def call(self, x):
        return self.student(x)


# 4 classes of 16 x 16 images: a bright quadrant, plus noise
def data(n):
    y = rng.integers(0, 4, n)
    x = rng.random((n, 16, 16, 1)).astype("float32") * 0.5
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, 8 * r:8 * r + 8, 8 * c:8 * c + 8] += 0.5
    return x, y


x_train, y_train = data(512)
x_test, y_test = data(128)
teacher = keras.Sequential([keras.Input(shape=(16, 16, 1)), layers.Conv2D(16, (3, 3), strides=(2, 2), padding="same"),
                            layers.LeakyReLU(negative_slope=0.2),
                            layers.MaxPooling2D(pool_size=(2, 2), strides=(1, 1), padding="same"),
                            layers.Conv2D(32, (3, 3), strides=(2, 2), padding="same"), layers.Flatten(),
                            layers.Dense(4)], name="teacher")
student = keras.Sequential([keras.Input(shape=(16, 16, 1)), layers.Conv2D(8, (3, 3), strides=(2, 2), padding="same"),
                            layers.LeakyReLU(negative_slope=0.2),
                            layers.MaxPooling2D(pool_size=(2, 2), strides=(1, 1), padding="same"),
                            layers.Conv2D(8, (3, 3), strides=(2, 2), padding="same"), layers.Flatten(),
                            layers.Dense(4)], name="student")
student_scratch = keras.models.clone_model(student)

teacher.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy()])
teacher.fit(x_train, y_train, epochs=3, verbose=0)
teacher_accuracy = teacher.evaluate(x_test, y_test, verbose=0)[1]

distiller = Distiller(student=student, teacher=teacher)
distiller.compile(optimizer=keras.optimizers.Adam(), metrics=[keras.metrics.SparseCategoricalAccuracy()],
                  student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  distillation_loss_fn=keras.losses.KLDivergence(), alpha=0.1, temperature=10)
history = distiller.fit(x_train, y_train, epochs=5, verbose=0)
distilled_accuracy = distiller.evaluate(x_test, y_test, verbose=0)[1]

student_scratch.compile(optimizer=keras.optimizers.Adam(),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=[keras.metrics.SparseCategoricalAccuracy()])
student_scratch.fit(x_train, y_train, epochs=3, verbose=0)
scratch_accuracy = student_scratch.evaluate(x_test, y_test, verbose=0)[1]

print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(history.history), "distilled_accuracy": float(distilled_accuracy)},
    "checks": {"distilled_accuracy_at_least_0.7": float(distilled_accuracy) >= 0.7,
               "loss_falls_by_two_thirds": history.history["loss"][-1] <= history.history["loss"][0] / 3,
               "history_has_loss_and_metric": sorted(history.history) == ["loss", "sparse_categorical_accuracy"]},
    "info": {"teacher_accuracy": float(teacher_accuracy), "scratch_accuracy": float(scratch_accuracy),
             "loss": [round(v, 4) for v in history.history["loss"]]},
}))

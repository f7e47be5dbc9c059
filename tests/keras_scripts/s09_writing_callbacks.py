import keras
# Scenario: writing your own callbacks (the "Writing your own callbacks" guide): a callback
# overriding every hook of fit, evaluate and predict that records the keys of the `logs` it
# receives; a loss-printing callback reading logs["loss"] and logs["mean_absolute_error"]; the
# guide's EarlyStoppingAtMinLoss (patience, self.model.stop_training, get/set_weights); and its
# CustomLearningRateScheduler (reads and sets self.model.optimizer.learning_rate).
# Thresholds: the hooks are called the expected number of times, the early-stopping callback
# stops before the last epoch, and the schedule's learning rates are the ones set.
import json

import numpy as np

keras.utils.set_random_seed(9)
rng = np.random.default_rng(0)
x = rng.random((600, 8)).astype("float32")
y = (x @ rng.standard_normal((8, 1)) + 0.01 * rng.standard_normal((600, 1))).astype("float32")


def get_model():
    model = keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mean_squared_error",
                  metrics=["mean_absolute_error"])
    return model


class CustomCallback(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls, self.keys = {}, {}

    def _record(self, hook, logs):
        self.calls[hook] = self.calls.get(hook, 0) + 1
        self.keys[hook] = sorted(logs) if isinstance(logs, dict) else repr(logs)

    def on_train_begin(self, logs=None): self._record("on_train_begin", logs)
    def on_train_end(self, logs=None): self._record("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._record("on_epoch_begin", logs)
    def on_epoch_end(self, epoch, logs=None): self._record("on_epoch_end", logs)
    def on_test_begin(self, logs=None): self._record("on_test_begin", logs)
    def on_test_end(self, logs=None): self._record("on_test_end", logs)
    def on_predict_begin(self, logs=None): self._record("on_predict_begin", logs)
    def on_predict_end(self, logs=None): self._record("on_predict_end", logs)
    def on_train_batch_begin(self, batch, logs=None): self._record("on_train_batch_begin", logs)
    def on_train_batch_end(self, batch, logs=None): self._record("on_train_batch_end", logs)
    def on_test_batch_begin(self, batch, logs=None): self._record("on_test_batch_begin", logs)
    def on_test_batch_end(self, batch, logs=None): self._record("on_test_batch_end", logs)
    def on_predict_batch_begin(self, batch, logs=None): self._record("on_predict_batch_begin", logs)
    def on_predict_batch_end(self, batch, logs=None): self._record("on_predict_batch_end", logs)


class LossAndErrorPrintingCallback(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.lines = []

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.lines.append(f"batch {batch}: loss {logs['loss']:7.2f}")

    def on_epoch_end(self, epoch, logs=None):
        self.lines.append(f"epoch {epoch}: loss {logs['loss']:7.2f}, mae {logs['mean_absolute_error']:7.2f}")
        print(self.lines[-1])


class EarlyStoppingAtMinLoss(keras.callbacks.Callback):
    def __init__(self, patience=0):
        super().__init__()
        self.patience = patience
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best = 0, 0, np.inf

    def on_epoch_end(self, epoch, logs=None):
        current = logs.get("loss")
        if np.less(current, self.best - 1e-3):
            self.best, self.wait = current, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


LR_SCHEDULE = [(3, 0.05), (6, 0.01), (9, 0.005)]


def lr_schedule(epoch, lr):
    if epoch < LR_SCHEDULE[0][0] or epoch > LR_SCHEDULE[-1][0]:
        return lr
    for i in range(len(LR_SCHEDULE)):
        if epoch == LR_SCHEDULE[i][0]:
            return LR_SCHEDULE[i][1]
    return lr


class CustomLearningRateScheduler(keras.callbacks.Callback):
    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(np.array(self.model.optimizer.learning_rate))
        scheduled_lr = self.schedule(epoch, lr)
        self.model.optimizer.learning_rate = scheduled_lr
        self.seen.append(float(np.array(self.model.optimizer.learning_rate)))


# 1. every hook, and what its logs hold
model = get_model()
custom = CustomCallback()
model.fit(x, y, batch_size=100, epochs=2, validation_split=0.5, verbose=0, callbacks=[custom])
model.evaluate(x, y, batch_size=200, verbose=0, callbacks=[custom])
model.predict(x, batch_size=300, verbose=0, callbacks=[custom])
print("hook calls:", custom.calls)

# 2. the printing callback, early stopping and the learning-rate schedule
model = get_model()
printer = LossAndErrorPrintingCallback()
model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[printer])
model = get_model()
stopper = EarlyStoppingAtMinLoss(patience=2)
history = model.fit(x, y, batch_size=600, epochs=200, verbose=0, callbacks=[stopper])
model = get_model()
scheduler = CustomLearningRateScheduler(lr_schedule)
model.fit(x, y, batch_size=64, epochs=11, verbose=0, callbacks=[scheduler])
print("learning rates:", scheduler.seen)

epochs_run = len(history.history["loss"])
result = {
    "figures": {
        "hook_calls": dict(sorted(custom.calls.items())),
        "hook_log_keys": dict(sorted(custom.keys.items())),
        "printed_lines": len(printer.lines),
        "scheduled_learning_rates": [round(v, 6) for v in scheduler.seen],
    },
    "info": {"early_stopping_epochs": epochs_run},
    "checks": {
        "14 hooks called": len(custom.calls) == 14,
        "train batch hooks once per step": custom.calls.get("on_train_batch_end") == 6,
        "early stopping stopped training": 3 <= epochs_run < 200,
        "schedule applied": [round(v, 6) for v in scheduler.seen] == [0.1] * 3 + [0.05] * 3 + [0.01] * 3 + [0.005] * 2,
    },
}
print("RESULT " + json.dumps(result))

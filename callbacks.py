"""Callbacks, as `keras.callbacks`: hooks around epochs and batches of fit/evaluate/predict."""
import csv
import math
import os

import numpy as np


def _is_chief(model):
    """Whether this process writes files: False on ranks other than 0 of a multi-process strategy."""
    from .models.io import is_chief
    return is_chief(model)


class Callback:
    """Base class of callbacks: override the hooks you need. Every hook receives `logs`, a dict
    of floats (`{}` when there is nothing to report), as in Keras."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): self.on_batch_begin(batch, logs)
    def on_train_batch_end(self, batch, logs=None): self.on_batch_end(batch, logs)
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass


def pythonify_logs(logs):
    """A new dict of `logs` with scalar tensor values as Python floats, other tensors (a metric
    with several thresholds, F1Score per class) as numpy arrays, and nested dicts (a step's
    `{"compile_metrics": {...}}`) flattened, keys sorted, as Keras's."""
    out = {}
    for k, v in sorted((logs or {}).items()):
        if isinstance(v, dict):
            out.update(pythonify_logs(v))
            continue
        if hasattr(v, "numpy") and getattr(v, "shape", ()) not in ((), (1,)):
            out[k] = v.numpy()
            continue
        try:
            v = float(v)
        except (TypeError, ValueError):
            pass
        out[k] = v
    return out


_BATCH_HOOKS = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end",
                "on_test_batch_begin": None, "on_test_batch_end": None,
                "on_predict_batch_begin": None, "on_predict_batch_end": None}


def _overrides(callback, hook):
    method = getattr(callback, hook)
    return getattr(method, "__func__", method) is not getattr(Callback, hook)


class CallbackList:
    """Calls the hooks of a list of callbacks with the same logs dict, so that what one callback
    adds (ReduceLROnPlateau's `learning_rate`) reaches the next (History, last). A batch hook runs
    only when some callback overrides it: without one, fit reads nothing back per step."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks or [])
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks must be Callback instances, received {type(c).__name__}")
            c.set_model(model)
            c.set_params(params)
        self._batch = {hook: [c for c in self.callbacks if _overrides(c, hook) or alias and _overrides(c, alias)]
                       for hook, alias in _BATCH_HOOKS.items()}

    def _call(self, hook, *args, logs=None):
        logs = pythonify_logs(logs)
        for c in self.callbacks:
            getattr(c, hook)(*args, logs)
        return logs

    def wants(self, hook):
        """Whether some callback reads the logs of batch hook `hook`."""
        return bool(self._batch[hook])

    def _call_batch(self, hook, batch, logs):
        if self._batch[hook]:
            logs = pythonify_logs(logs)
            for c in self._batch[hook]:
                getattr(c, hook)(batch, logs)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs=logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs=logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs=logs)
    def on_epoch_end(self, epoch, logs=None): return self._call("on_epoch_end", epoch, logs=logs)
    def on_test_begin(self, logs=None): self._call("on_test_begin", logs=logs)
    def on_test_end(self, logs=None): self._call("on_test_end", logs=logs)
    def on_predict_begin(self, logs=None): self._call("on_predict_begin", logs=logs)
    def on_predict_end(self, logs=None): self._call("on_predict_end", logs=logs)
    def on_train_batch_begin(self, batch, logs=None): self._call_batch("on_train_batch_begin", batch, logs)
    def on_train_batch_end(self, batch, logs=None): self._call_batch("on_train_batch_end", batch, logs)
    def on_test_batch_begin(self, batch, logs=None): self._call_batch("on_test_batch_begin", batch, logs)
    def on_test_batch_end(self, batch, logs=None): self._call_batch("on_test_batch_end", batch, logs)
    def on_predict_batch_begin(self, batch, logs=None): self._call_batch("on_predict_batch_begin", batch, logs)
    def on_predict_batch_end(self, batch, logs=None): self._call_batch("on_predict_batch_end", batch, logs)


class History(Callback):
    """Records the logs of each epoch in `history` ({"loss": [...], ...})."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        self.model.history = self


def _monitor_op(mode, monitor, name):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{name}: mode must be 'auto', 'min' or 'max', received {mode!r}")
    if mode == "max" or mode == "auto" and ("acc" in monitor or monitor.startswith("fmeasure") or "auc" in monitor):
        return np.greater, -np.inf
    return np.less, np.inf


class EarlyStopping(Callback):
    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, patience, verbose
        self.baseline, self.restore_best_weights, self.start_from_epoch = baseline, restore_best_weights, start_from_epoch
        self.monitor_op, _ = _monitor_op(mode, monitor, "EarlyStopping")
        self.min_delta = abs(min_delta) * (1 if self.monitor_op == np.greater else -1)
        self.stopped_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights, self.best_epoch = 0, 0, None, 0
        self.best = np.inf if self.monitor_op == np.less else -np.inf

    def _improved(self, current, reference):
        return self.monitor_op(current - self.min_delta, reference)

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            print(f"EarlyStopping: metric '{self.monitor}' is not available; available metrics are "
                  f"{', '.join(logs or {})}")
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (or its weights) after epochs; `filepath` may hold {epoch} and log keys,
    e.g. "ckpt-{epoch:02d}-{val_loss:.2f}.h5". Files are written atomically, and under a
    multi-process strategy by rank 0 only."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        if save_freq != "epoch" and not isinstance(save_freq, int):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or an int, received {save_freq!r}")
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only, self.save_freq = save_best_only, save_weights_only, save_freq
        self.monitor_op, default = _monitor_op(mode, monitor, "ModelCheckpoint")
        self.best = initial_value_threshold if initial_value_threshold is not None else default
        self._batches = 0
        if isinstance(save_freq, int):  # only then a batch hook (each one reads the step's logs)
            self.on_train_batch_end = self._on_train_batch_end

    def _save(self, epoch, logs):
        if not _is_chief(self.model):  # a multi-process strategy: rank 0 writes
            return
        path = self.filepath.format(epoch=epoch + 1, **(logs or {}))
        if self.save_best_only:
            current = (logs or {}).get(self.monitor)
            if current is None:
                print(f"ModelCheckpoint: can save best model only with '{self.monitor}' available, skipping")
                return
            if not self.monitor_op(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, saving to {path}")
            self.best = current
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)

    def _on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches % self.save_freq == 0:
            self._save(self._epoch, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, logs)


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at each epoch from `schedule(epoch, lr)`."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.model.optimizer.learning_rate
        try:
            new = self.schedule(epoch, lr)
        except TypeError:
            new = self.schedule(epoch)
        new = float(new)
        if not math.isfinite(new):
            raise ValueError(f"LearningRateScheduler: the schedule returned {new} at epoch {epoch}")
        self.model.optimizer.learning_rate = new
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new}.")

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1, received {factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.monitor_op, self._init_best = _monitor_op(mode, monitor, "ReduceLROnPlateau")

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = self._init_best, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        better = current < self.best - self.min_delta if self.monitor_op == np.less else current > self.best + self.min_delta
        if better:
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(self.model.optimizer.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Streams epoch results to a CSV file (appends when append=True); under a multi-process
    strategy rank 0 writes it."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self._file = None
        self._keys = None

    def on_train_begin(self, logs=None):
        if not _is_chief(self.model):  # a multi-process strategy: rank 0 writes
            return
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._header_written = exists
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        if not _is_chief(self.model):
            return
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self._keys, delimiter=self.sep)
            if not self._header_written:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self._keys}})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class TerminateOnNaN(Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and (np.isnan(loss) or np.isinf(loss)):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_train_begin=on_train_begin,
                     on_train_end=on_train_end, on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for k, f in hooks.items():
            if f is not None:
                if not k.startswith("on_") or not hasattr(Callback, k):
                    raise ValueError(f"LambdaCallback: unknown hook {k!r}")
                setattr(self, k, f)

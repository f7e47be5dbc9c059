"""Callbacks, as `keras.callbacks`: hooks around epochs and batches of fit/evaluate/predict."""
import csv
import math
import os
import time
import warnings

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
        if hasattr(v, "numpy"):  # a tensor: its read raises what its device raised (a deferred data check)
            out[k] = v.numpy() if getattr(v, "shape", ()) not in ((), (1,)) else float(v)
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
    only when some callback overrides it: without one, fit reads nothing back per step.

    As Keras's: `add_history` / `add_progbar` append a History / ProgbarLogger unless the list
    has one; `model` and the other keyword arguments (`epochs`, `steps`, `verbose`) are given to
    every callback (`set_model`, `set_params`); `append` adds one more."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        self.callbacks = []
        self.model, self.params = None, {}
        self._index_batch_hooks()
        for c in _flat_callbacks(callbacks):
            self.append(c)
        self._history = next((c for c in self.callbacks if isinstance(c, History)), None)
        self._progbar = next((c for c in self.callbacks if isinstance(c, ProgbarLogger)), None)
        if add_history and self._history is None:
            self._history = History()
            self.append(self._history)
        if add_progbar and self._progbar is None:
            self._progbar = ProgbarLogger()
            self.append(self._progbar)
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks must be Callback instances, received {type(callback).__name__}")
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)
        self._index_batch_hooks()

    def _index_batch_hooks(self):
        self._batch = {hook: [c for c in self.callbacks if _overrides(c, hook) or alias and _overrides(c, alias)]
                       for hook, alias in _BATCH_HOOKS.items()}

    def set_model(self, model):
        self.model = model
        if self._history is not None:
            model.history = self._history
        for c in self.callbacks:
            c.set_model(model)

    def set_params(self, params):
        self.params = dict(params)
        for c in self.callbacks:
            c.set_params(self.params)

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


def _flat_callbacks(callbacks):
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    out = []
    for c in callbacks:
        out.extend(_flat_callbacks(c) if isinstance(c, (list, tuple)) else [c])
    return out


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
    """Stops training when a batch's loss is NaN or infinite; with `raise_error=True` raises
    RuntimeError at once instead (so that no callback's `on_train_end` saves the bad state)."""

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and (np.isnan(loss) or np.isinf(loss)):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. Terminating "
                                   "training immediately.")
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


class ProgbarLogger(Callback):
    """Prints Keras's text progress bar (`lamina.utils.Progbar`) for each epoch of fit, and for
    evaluate and predict, as Keras's `ProgbarLogger`, at the `verbose` level fit was given (1 a
    bar, 2 a line per epoch, 0 nothing; "auto" is 1). Validation inside fit is silent. As in
    Keras, passing one to fit, evaluate or predict replaces their own progress display."""

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch, logs=None):
        from ._progbar import print_msg
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            print_msg(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)   # not the predictions

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def _reset_progbar(self):
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self):
        from ._progbar import Progbar
        if self.progbar is None:
            self.progbar = Progbar(target=self.target, verbose=self.verbose, unit_name="step",
                                   stateless_metrics=set())

    def _update_progbar(self, batch, logs=None):
        self._maybe_init_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finalize_progbar(self, logs):
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.progbar.target = self.seen
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)


class BackupAndRestore(Callback):
    """Keeps a backup of the training state in `backup_dir` so that an interrupted fit resumes,
    as Keras's `BackupAndRestore`: at the end of each epoch (or every `save_freq` batches) the
    model's weights and its optimizer's state go to `backup_dir/latest.weights.h5` (Keras 3's
    layout, the optimizer under "optimizer", as Keras's save_weights writes it) and the epoch
    reached to `backup_dir/training_metadata.json`, each written atomically. At the start of the
    next fit with this callback, they are loaded back and `model._initial_epoch` is set to the
    epoch to resume from. With `double_checkpoint`, the previous files are kept as `.bkp` copies,
    used when the latest ones cannot be read. With `delete_checkpoint` (default) the whole
    `backup_dir` is deleted when training ends normally.

    A backup taken inside an epoch (an int `save_freq`) restores those weights, and the epoch
    restarts from its first batch, as in Keras."""

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("BackupAndRestore: empty `backup_dir` argument passed; give the folder for the backup "
                             "(deleted after training unless delete_checkpoint=False)")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError("BackupAndRestore: invalid value for argument `save_freq`. Received: "
                             f"save_freq={save_freq!r}. Expected either 'epoch' or an integer value >= 1 (batches).")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq, self.double_checkpoint, self.delete_checkpoint = save_freq, double_checkpoint, delete_checkpoint
        self._weights_path = os.path.join(self.backup_dir, "latest.weights.h5")
        self._training_metadata_path = os.path.join(self.backup_dir, "training_metadata.json")
        self._prev_weights_path = self._weights_path + ".bkp"
        self._prev_training_metadata_path = self._training_metadata_path + ".bkp"
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = 0
        self._current_epoch = 0
        if save_freq != "epoch":   # only then a batch hook
            self.on_train_batch_end = self._on_train_batch_end

    def on_train_begin(self, logs=None):
        from ._fileio import FileFormatError
        try:
            self._load_model()
        except (OSError, FileFormatError) as e:
            # the latest backup cannot be read: fall back on the previous one
            if not os.path.exists(self._prev_weights_path):
                problem = f"BackupAndRestore could not restore this backup ({e}); delete {self.backup_dir} to start " \
                          "training afresh"
                if isinstance(e, FileFormatError):
                    raise FileFormatError(e.path, problem) from e
                raise OSError(f"{self._weights_path}: {problem}") from e
            _copy_atomic(self._prev_weights_path, self._weights_path)
            if os.path.exists(self._prev_training_metadata_path):
                _copy_atomic(self._prev_training_metadata_path, self._training_metadata_path)
            elif os.path.exists(self._training_metadata_path):
                os.remove(self._training_metadata_path)
            self._load_model()

    def _load_model(self):
        import json
        if not self.model.built:
            raise ValueError(f"To use the BackupAndRestore callback, your model must be built before you call `fit()`. "
                             f"Model '{self.model.name}' is unbuilt. You can build it beforehand by calling it on a "
                             "batch of data, or by starting it with an Input.")
        if os.path.exists(self._weights_path):
            import h5py
            from .models.state import load_state
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None and not optimizer.built:
                optimizer.build(self.model.trainable_weights)   # its state is loaded too
            with h5py.File(self._weights_path, "r") as h5:
                load_state(self.model, h5, self._weights_path, include_optimizer=True)
        if os.path.exists(self._training_metadata_path):
            with open(self._training_metadata_path) as f:
                try:
                    metadata = json.loads(f.read())
                    epoch = int(metadata["epoch"])
                except (ValueError, KeyError, TypeError) as e:
                    from ._fileio import FileFormatError
                    raise FileFormatError(self._training_metadata_path, f"not BackupAndRestore's training metadata "
                                          f"({type(e).__name__}: {e})") from e
            self.model._initial_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        if self.save_freq == "epoch":
            self._save_model()

    def _on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model()

    def _should_save_on_batch(self, batch):
        """Keras's count of batches (steps_per_execution may skip batch indices)."""
        add = batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen
        self._batches_seen_since_last_saving += add
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _save_model(self):
        if not _is_chief(self.model):   # a multi-process strategy: rank 0 writes
            return
        import json

        import h5py
        from ._fileio import atomic_write
        from .models.state import save_state
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint:
            for latest, previous in ((self._weights_path, self._prev_weights_path),
                                     (self._training_metadata_path, self._prev_training_metadata_path)):
                if os.path.exists(latest):
                    _copy_atomic(latest, previous)
        with atomic_write(self._weights_path) as f:
            with h5py.File(f, "w") as h5:
                save_state(self.model, h5, include_optimizer=True)
        with atomic_write(self._training_metadata_path, "w") as f:
            f.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self.backup_dir) and _is_chief(self.model):
            import shutil
            shutil.rmtree(self.backup_dir)


def _copy_atomic(source, target):
    import shutil
    from ._fileio import atomic_write
    with open(source, "rb") as src, atomic_write(target) as dst:
        shutil.copyfileobj(src, dst)


def _ema_optimizers(model):
    """The optimizers whose moving averages SwapEMAWeights swaps (inside a loss-scale wrapper or a
    MultiOptimizer, as Keras's)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError("SwapEMAWeights: the model has no optimizer; compile it with an optimizer made with "
                         "use_ema=True")
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if hasattr(optimizer, "optimizers"):
        found = [o for o in optimizer.optimizers if getattr(o, "use_ema", False)]
        if not found:
            raise ValueError("SwapEMAWeights must be used when at least one inner optimizer has `use_ema=True` set. "
                             "Received a MultiOptimizer with all inner optimizers having `use_ema=False`.")
        return found
    if not getattr(optimizer, "use_ema", False):
        raise ValueError("SwapEMAWeights must be used when `use_ema=True` is set on the optimizer. Received: "
                         f"use_ema={getattr(optimizer, 'use_ema', None)}")
    return [optimizer]


class SwapEMAWeights(Callback):
    """Puts the optimizer's moving averages of the weights (`use_ema=True`) into the model for
    evaluation and prediction, and the trained weights back afterwards, as Keras's
    `SwapEMAWeights`; with `swap_on_epoch=True` also from the end of each epoch to the start of the
    next (so that callbacks such as ModelCheckpoint see the averaged weights)."""

    def __init__(self, swap_on_epoch=False):
        super().__init__()
        self.swap_on_epoch = swap_on_epoch
        self._ema_weights_in_model = False

    def _swap_variables(self):
        from .backend.manipulation import copy
        for optimizer in _ema_optimizers(self.model):
            for var, average in zip(optimizer._variables, optimizer._averages):
                held = copy(var)
                var.assign(average)
                average.assign(held)

    def _finalize_ema_values(self):
        for optimizer in _ema_optimizers(self.model):
            for var, average in zip(optimizer._variables, optimizer._averages):
                average.assign(var)

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch and self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch and not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True
            # fit writes the averages into the weights after the last epoch: they are the weights now
            if epoch == self.params.get("epochs", 0) - 1:
                self._finalize_ema_values()

    def on_test_begin(self, logs=None):
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True

    def on_test_end(self, logs=None):
        if self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False

    def on_predict_begin(self, logs=None):
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True

    def on_predict_end(self, logs=None):
        if self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False


class RemoteMonitor(Callback):
    """POSTs each epoch's logs to a server, as Keras's `RemoteMonitor`: to `root + path`, either as
    a form field `field` holding the JSON of `{"epoch": epoch, **logs}`, or (`send_as_json`) as a
    JSON body; `headers` are added to the request. A server that cannot be reached gives a
    warning, not an error. (Sent with Python's urllib: no extra package needed.)"""

    def __init__(self, root="http://localhost:9000", path="/publish/epoch/end/", field="data", headers=None,
                 send_as_json=False):
        super().__init__()
        if headers is not None and not isinstance(headers, dict):
            raise ValueError(f"RemoteMonitor: headers must be a dict of HTTP headers, received {type(headers).__name__}")
        self.root, self.path, self.field, self.headers, self.send_as_json = root, path, field, headers, send_as_json

    def on_epoch_end(self, epoch, logs=None):
        import json
        import urllib.error
        import urllib.parse
        import urllib.request
        send = {"epoch": epoch}
        for k, v in (logs or {}).items():
            if isinstance(v, (np.ndarray, np.generic)):
                v = v.item() if v.size == 1 else v.tolist()
            send[k] = v
        headers = dict(self.headers or {})
        if self.send_as_json:
            body = json.dumps(send).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        else:
            body = urllib.parse.urlencode({self.field: json.dumps(send)}).encode("utf-8")
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        request = urllib.request.Request(self.root + self.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            warnings.warn(f"Could not reach RemoteMonitor root server at {self.root} ({e})", stacklevel=2)


class TensorBoard(Callback):
    """Writes TensorBoard logs, as Keras's `TensorBoard`, without TensorFlow (lamina._tensorboard
    writes the event files): under `log_dir/train` and `log_dir/validation`,

    - each epoch's logs as scalars `epoch_<name>` at step `epoch` (the `val_` ones, without the
      prefix, under validation), with `epoch_learning_rate` (and `epoch_steps_per_second` when
      `write_steps_per_second`) under train;
    - with `update_freq="batch"` or an int N, the batch logs as `batch_<name>` every N batches,
      at the count of batches since training began (and `batch_steps_per_second`);
    - after each evaluation (in fit or `evaluate(callbacks=[...])`), `evaluation_<name>_vs_iterations`
      under validation at the optimizer's iteration count;
    - every `histogram_freq` epochs, a histogram `<weight path>/histogram` of each weight (and,
      with `write_images`, the weights as images `<weight path>/image` where Keras draws them);
    - with `write_graph`, the model's JSON (tag "keras", for TensorBoard's graph page) when the
      callback is given a Functional or Sequential model;
    - every `embeddings_freq` epochs, Keras 3's projector files: `log_dir/projector_config.pbtxt`
      naming the Embedding layers, and the weights in `train/keras_embedding.ckpt-<epoch>.weights.h5`
      (as with Keras 3, TensorBoard's projector cannot load a `.weights.h5` file).

    Profiling needs a profiler lamina does not have: `profile_batch` other than 0 raises. Files are
    flushed at each epoch's end and after evaluation, and closed at the end of training; under a
    multi-process strategy only rank 0 writes."""

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0, embeddings_freq=0,
                 embeddings_metadata=None):
        super().__init__()
        for name, value in (("histogram_freq", histogram_freq), ("embeddings_freq", embeddings_freq)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TensorBoard: {name} must be an int >= 0 (a number of epochs; 0 turns it off), "
                                 f"received {value!r}")
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, int)
                                       or update_freq < 1):
            raise ValueError("TensorBoard: update_freq must be 'epoch', 'batch' or an int >= 1 (a number of batches), "
                             f"received {update_freq!r}")
        if embeddings_metadata is not None and not isinstance(embeddings_metadata, (str, dict)):
            raise ValueError("TensorBoard: embeddings_metadata must be a file name or a dict {embedding layer name: "
                             f"file name}}, received {type(embeddings_metadata).__name__}")
        if _profile_range(profile_batch) != (0, 0):
            raise ValueError(f"TensorBoard: profile_batch={profile_batch!r} asks for profiling, but lamina has no "
                             "profiler to trace batches with; pass profile_batch=0")
        # as in Keras, images come with the histograms and metadata with the embeddings: say so
        if write_images and not histogram_freq:
            warnings.warn("TensorBoard: write_images=True draws the weights when their histograms are written, "
                          "and histogram_freq=0 writes none; pass histogram_freq=1 (or N) to get images",
                          stacklevel=2)
        if embeddings_metadata is not None and not embeddings_freq:
            warnings.warn("TensorBoard: embeddings_metadata is used for the projector files, which "
                          "embeddings_freq=0 does not write; pass embeddings_freq=1 (or N)", stacklevel=2)
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq, self.write_graph, self.write_images = histogram_freq, write_graph, write_images
        self.write_steps_per_second, self.update_freq = write_steps_per_second, update_freq
        self.embeddings_freq, self.embeddings_metadata = embeddings_freq, embeddings_metadata
        self._writers = {}
        self._global_train_batch = 0
        self._previous_epoch_iterations = 0
        self._epoch_start_time = self._batch_start_time = 0.0
        self._warned = set()
        if update_freq != "epoch":   # only then batch hooks (each reads the step's logs back)
            self.on_train_batch_begin = self._on_train_batch_begin
            self.on_train_batch_end = self._on_train_batch_end

    # -- writers --
    def set_model(self, model):
        """Sets the model, and writes its JSON when `write_graph` (as Keras, for every fit,
        evaluate or predict the callback is given to)."""
        self._close_writers()
        self.model = model
        self._train_dir = os.path.join(self.log_dir, "train")
        self._val_dir = os.path.join(self.log_dir, "validation")
        if not _is_chief(model):
            return
        if self.write_graph:
            self._write_model_json()
        if self.embeddings_freq:
            self._configure_embeddings()

    def _writer(self, which):
        from ._tensorboard import EventFileWriter
        w = self._writers.get(which)
        if w is None:
            w = self._writers[which] = EventFileWriter(self._train_dir if which == "train" else self._val_dir)
        return w

    def _close_writers(self):
        for w in self._writers.values():
            w.close()
        self._writers = {}

    def _write(self, which, values, step):
        if values and _is_chief(self.model):
            self._writer(which).add_summary(values, step)

    def _scalars(self, prefix, logs, suffix=""):
        from ._tensorboard import scalar_value
        out = []
        for name, value in logs.items():
            try:
                out.append(scalar_value(f"{prefix}{name}{suffix}", float(value)))
            except (TypeError, ValueError):
                if name not in self._warned:  # a vector metric (F1Score per class), a string...
                    self._warned.add(name)
                    shape = getattr(value, "shape", None)
                    warnings.warn(f"TensorBoard: log '{name}' is not a single number ("
                                  f"{'shape ' + str(shape) if shape is not None else type(value).__name__}), and a "
                                  "TensorBoard scalar holds one; it is not written", stacklevel=3)
        return out

    def _write_model_json(self):
        from .models.model import Functional
        from .models.sequential import Sequential
        from ._tensorboard import string_tensor_value
        if not isinstance(self.model, (Functional, Sequential)):
            return   # as Keras: subclassed models have no graph to draw
        try:
            config = self.model.to_json()
        except Exception as e:  # noqa: BLE001 - as Keras: a model that cannot be serialized is not drawn
            warnings.warn(f"TensorBoard: model '{self.model.name}' could not be serialized to JSON "
                          f"({type(e).__name__}: {e}); its graph is not written", stacklevel=3)
            return
        # Keras's keras_model_summary: plugin "graph_keras_model", content b"1", a scalar string
        self._write("train", [string_tensor_value("keras", [config.encode("utf-8")], "graph_keras_model",
                                                  content=b"1", scalar=True)], 0)
        if "train" in self._writers:
            self._writers["train"].flush()

    # -- hooks --
    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        self._previous_epoch_iterations = 0

    def on_train_end(self, logs=None):
        self._close_writers()

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "iterations"):
            self._write("validation", self._scalars("evaluation_", logs or {}, "_vs_iterations"),
                        int(optimizer.iterations))
            if "validation" in self._writers:
                self._writers["validation"].flush()

    def _on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        if self.write_steps_per_second:
            self._batch_start_time = time.time()

    def _on_train_batch_end(self, batch, logs=None):
        if self._global_train_batch % self.update_freq:
            return
        values = []
        if self.write_steps_per_second:
            elapsed = time.time() - self._batch_start_time
            values += self._scalars("batch_", {"steps_per_second": 1.0 / elapsed if elapsed > 0 else math.inf})
        values += self._scalars("batch_", logs or {})
        self._write("train", values, self._global_train_batch)

    def on_epoch_begin(self, epoch, logs=None):
        if self.write_steps_per_second:
            self._previous_epoch_iterations = int(self.model.optimizer.iterations)
            self._epoch_start_time = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self._log_epoch_metrics(epoch, logs)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._log_weights(epoch)
        if self.embeddings_freq and epoch % self.embeddings_freq == 0:
            self._log_embeddings(epoch)
        for w in self._writers.values():
            w.flush()

    # -- what is written --
    def _log_epoch_metrics(self, epoch, logs):
        if not logs:
            return
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        optimizer = getattr(self.model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)   # a loss-scale wrapper: the inner one
        if optimizer is not None and hasattr(optimizer, "optimizers"):
            for opt in optimizer.optimizers:
                train[f"learning_rate_{opt.name}"] = float(opt.learning_rate)
        elif optimizer is not None and hasattr(optimizer, "learning_rate"):
            train["learning_rate"] = float(optimizer.learning_rate)
        if self.write_steps_per_second:
            elapsed = time.time() - self._epoch_start_time
            steps = int(self.model.optimizer.iterations) - self._previous_epoch_iterations
            train["steps_per_second"] = steps / elapsed if elapsed > 0 else math.inf
        self._write("train", self._scalars("epoch_", train), epoch)
        self._write("validation", self._scalars("epoch_", val), epoch)

    def _log_weights(self, epoch):
        from ._tensorboard import histogram_value, image_value
        values = []
        for layer in self.model.layers:
            for weight in layer.weights:
                name = weight.path.replace(":", "_")
                w = np.asarray(weight.numpy())
                if not np.isfinite(w).all() and name not in self._warned:
                    self._warned.add(name)
                    warnings.warn(f"TensorBoard: weight '{weight.path}' holds {int((~np.isfinite(w)).sum())} NaN or "
                                  f"infinite values at epoch {epoch}; its histogram counts the finite ones only",
                                  stacklevel=3)
                values.append(histogram_value(f"{name}/histogram", w))
                if self.write_images:
                    image = _weight_image(w)
                    if image is not None:
                        values.append(image_value(f"{name}/image", image))
        self._write("train", values, epoch)

    def _configure_embeddings(self):
        """Writes log_dir/projector_config.pbtxt as Keras's (one entry per Embedding layer)."""
        from .layers.embedding import Embedding
        from ._fileio import atomic_write
        metadata = dict(self.embeddings_metadata) if isinstance(self.embeddings_metadata, dict) else None
        entries = []
        for layer in self.model.layers:
            if isinstance(layer, Embedding):
                # Keras names every entry after the first weighted layer's variable
                entry = 'embeddings {\n  tensor_name: "layer_with_weights-0/embeddings/.ATTRIBUTES/VARIABLE_VALUE"\n'
                path = self.embeddings_metadata if isinstance(self.embeddings_metadata, str) else \
                    (metadata.pop(layer.name, None) if metadata is not None else None)
                if path is not None:
                    entry += f'  metadata_path: "{_text_format_escape(os.fspath(path))}"\n'
                entries.append(entry + "}\n")
        if metadata:
            raise ValueError(f"TensorBoard: embeddings_metadata names {sorted(metadata)}, which are not Embedding "
                             f"layers of model '{self.model.name}' (its Embedding layers: "
                             f"{[l.name for l in self.model.layers if isinstance(l, Embedding)]})")
        with atomic_write(os.path.join(self.log_dir, "projector_config.pbtxt"), "w") as f:
            f.write("".join(entries))

    def _log_embeddings(self, epoch):
        self.model.save_weights(os.path.join(self.log_dir, "train", f"keras_embedding.ckpt-{epoch}.weights.h5"))


def _profile_range(profile_batch):
    """(start, stop) of Keras's `profile_batch`: an int, a pair, or a "start,stop" string."""
    message = ("TensorBoard: profile_batch must be a non-negative integer or a pair of positive integers (a range "
               f"of batches to profile), received {profile_batch!r}")
    value = profile_batch
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.split(",")]
        except ValueError:
            raise ValueError(message) from None
        value = value[0] if len(value) == 1 else value
    if isinstance(value, int) and not isinstance(value, bool):
        start = stop = value
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        start, stop = value
    else:
        raise ValueError(message)
    if start < 0 or stop < start:
        raise ValueError(message)
    return start, stop


def _weight_image(w):
    """A weight as Keras's TensorBoard draws it: (k, h, w, 1) uint8 images, or None where Keras
    draws none. Values are scaled as tf.summary.image scales floats: x * 255.5, clipped to 0..255."""
    w = np.squeeze(w)
    if w.ndim == 1:                    # a bias: one column
        w = w.reshape(1, w.shape[0], 1, 1)
    elif w.ndim == 2:                  # a Dense kernel, the longer side across
        if w.shape[0] > w.shape[1]:
            w = w.T
        w = w.reshape(1, w.shape[0], w.shape[1], 1)
    elif w.ndim == 3:                  # a Conv1D kernel (channels-last): one image per output channel
        w = np.transpose(w, (2, 0, 1))
        w = w.reshape(w.shape[0], w.shape[1], w.shape[2], 1)
    if w.ndim != 4 or w.shape[-1] not in (1, 3, 4):
        return None
    w = np.nan_to_num(w.astype(np.float64), nan=0.0)
    return np.clip(w * 255.5, 0, 255).astype(np.uint8)[:3]   # tf.summary.image's max_outputs=3


def _text_format_escape(s):
    """A string as protobuf's text format writes it between double quotes (C escapes, UTF-8
    bytes past ASCII in octal)."""
    special = {9: "\\t", 10: "\\n", 13: "\\r", 34: '\\"', 39: "\\'", 92: "\\\\"}
    return "".join(special.get(b) or (chr(b) if 32 <= b < 127 else f"\\{b:03o}") for b in s.encode("utf-8"))

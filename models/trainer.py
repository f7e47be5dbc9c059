"""compile / fit / evaluate / predict: one loop over batches calling a train step; callbacks and
the tqdm progress bar live outside the step."""
import sys
import time

import numpy as np

from .. import callbacks as callbacks_module
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from ..backend import math as _m
from ..backend.autodiff import GradientTape
from ..backend.tensor import Tensor, convert_to_tensor
from ..layers.layer import flatten, map_structure
from .data import ArrayData, make_data


def _to_tensors(x, dtypes=None):
    return map_structure(lambda a: a if isinstance(a, Tensor) else convert_to_tensor(a), x)


class _Compiled:
    """The losses and metrics of compile(), matched to the model's outputs on first use."""

    def __init__(self, loss, loss_weights, metrics, weighted_metrics):
        self.loss, self.loss_weights = loss, loss_weights
        self.metrics_spec, self.weighted_spec = metrics, weighted_metrics
        self.built = False

    def build(self, output_names, y_true, y_pred):
        n = len(output_names)
        yt, yp = flatten(y_true), flatten(y_pred)
        if len(yt) != n:
            raise ValueError(f"The model has {n} output(s) {output_names} but {len(yt)} target array(s) were given")

        def per_output(spec, what):
            if isinstance(spec, dict):
                unknown = set(spec) - set(output_names)
                if unknown:
                    raise ValueError(f"compile: {what} has keys {sorted(unknown)} that are not output names "
                                     f"{output_names}")
                return [spec.get(k) for k in output_names]
            if isinstance(spec, (list, tuple)) and n > 1 and what in ("loss", "loss_weights"):
                if len(spec) != n:
                    raise ValueError(f"compile: {len(spec)} {what} given for {n} outputs {output_names}")
                return list(spec)
            if isinstance(spec, (list, tuple)) and what != "loss" and n > 1 and spec and \
                    all(isinstance(s, (list, tuple)) or s is None for s in spec):
                return list(spec)
            return [spec] * n
        self.losses = [losses_module.get(l) for l in per_output(self.loss, "loss")]
        lw = self.loss_weights
        self.weights = per_output(lw, "loss_weights") if lw is not None else [1.0] * n
        mspec = per_output(self.metrics_spec or [], "metrics")
        wspec = per_output(self.weighted_spec or [], "weighted_metrics")
        self.metrics = []
        prefix = (lambda name, i: f"{output_names[i]}_{name}") if n > 1 else (lambda name, i: name)
        for i in range(n):
            ms = mspec[i] or []
            ms = ms if isinstance(ms, (list, tuple)) else [ms]
            for m in ms:
                obj = metrics_module.get(m, yt[i], yp[i])
                obj.name = prefix(obj.name, i)
                self.metrics.append((i, obj, False))
            ws = wspec[i] or []
            ws = ws if isinstance(ws, (list, tuple)) else [ws]
            for m in ws:
                obj = metrics_module.get(m, yt[i], yp[i])
                obj.name = prefix(obj.name, i)
                self.metrics.append((i, obj, True))
        self.output_names = output_names
        self.loss_trackers = [metrics_module.Mean(name=f"{output_names[i]}_loss") for i in range(n)] if n > 1 else []
        self.built = True


class Trainer:
    def __init__(self):
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._compiled = None

    # -- compile --
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        self.optimizer = optimizers_module.get(optimizer)
        if loss is not None:
            for l in flatten(loss) if isinstance(loss, (list, tuple, dict)) else [loss]:
                if l is not None:
                    losses_module.get(l)  # fail early on unknown names
        self._compiled = _Compiled(loss, loss_weights, metrics, weighted_metrics)
        self._loss_tracker = metrics_module.Mean(name="loss")
        self.compiled = True

    @property
    def metrics_names(self):
        if not self.compiled or not self._compiled.built:
            return ["loss"]
        return ["loss"] + [t.name for t in self._compiled.loss_trackers] + [m.name for _, m, _ in self._compiled.metrics]

    def _output_names(self):
        outs = getattr(self, "outputs", None)
        if outs:
            if isinstance(getattr(self, "_outputs_struct", None), dict):
                return list(self._outputs_struct)
            names = []
            for t in outs:
                layer = t._keras_history[0] if t._keras_history else None
                names.append(layer.name if layer is not None else f"output_{len(names)}")
            return names
        return ["output"]

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"You must call compile() on model '{self.name}' before {what}(), e.g. "
                               "model.compile(optimizer='adam', loss='mse')")

    # -- the steps --
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        c = self._compiled
        if not c.built:
            c.build(self._output_names(), y, y_pred)
        yt, yp = flatten(y), flatten(y_pred)
        total = None
        per_output = []
        for i, (fn, w) in enumerate(zip(c.losses, c.weights)):
            if fn is None:
                per_output.append(None)
                continue
            sw = sample_weight[i] if isinstance(sample_weight, (list, tuple)) else sample_weight
            sw = _with_mask(sw, getattr(yp[i], "_keras_mask", None), normalize=True)
            if isinstance(fn, losses_module.Loss):
                value = fn(yt[i], yp[i], sample_weight=sw)
            else:
                value = losses_module.reduce_values(fn(yt[i], yp[i]), sw)
            per_output.append(value)
            term = _m.multiply(value, float(w)) if w != 1.0 else value
            total = term if total is None else _m.add(total, term)
        if total is None:
            raise ValueError("compile() was called without a loss, so the model cannot be trained; pass loss=...")
        for extra in self.losses:
            total = _m.add(total, extra)
        self._last_per_output = per_output
        return total

    def _update_metrics(self, loss, y, y_pred, sample_weight, batch_n):
        c = self._compiled
        self._loss_tracker._total += float(loss) * batch_n
        self._loss_tracker._count += batch_n
        for tracker, v in zip(c.loss_trackers, self._last_per_output):
            if v is not None:
                tracker._total += float(v) * batch_n
                tracker._count += batch_n
        yt, yp = flatten(y), flatten(y_pred)
        for i, m, weighted in c.metrics:
            sw = sample_weight if weighted else None
            m.update_state(yt[i], yp[i], sample_weight=_with_mask(sw, getattr(yp[i], "_keras_mask", None)))

    def _logs(self):
        c = self._compiled
        logs = {"loss": self._loss_tracker.result()}
        for t in c.loss_trackers:
            logs[t.name] = t.result()
        for _, m, _ in c.metrics:
            logs[m.name] = float(m.result())
        return logs

    def _reset_metrics(self):
        self._loss_tracker.reset_state()
        if self._compiled.built:
            for t in self._compiled.loss_trackers:
                t.reset_state()
            for _, m, _ in self._compiled.metrics:
                m.reset_state()

    def train_step(self, x, y, sample_weight=None):
        tv = self.trainable_weights
        with GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        grads = tape.gradient(loss, tv)
        self.optimizer.apply(grads, tv)
        self._update_metrics(loss, y, y_pred, sample_weight, _batch_len(x))
        return self._logs()

    def test_step(self, x, y, sample_weight=None):
        y_pred = self(x, training=False)
        loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        self._update_metrics(loss, y, y_pred, sample_weight, _batch_len(x))
        return self._logs()

    def predict_step(self, x):
        return self(x, training=False)

    # -- fit --
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        self._require_compiled("fit")
        data = make_data(x, y, sample_weight, batch_size, shuffle, steps_per_epoch)
        if class_weight is not None and isinstance(data, ArrayData):
            data.sw = _class_weights_to_sample_weight(class_weight, data.y, data.sw)
        val = None
        if validation_split and validation_data is None:
            if not isinstance(data, ArrayData):
                raise ValueError("validation_split is only supported for array inputs, not generators; "
                                 "pass validation_data instead")
            val = data.split(validation_split)
        elif validation_data is not None:
            if isinstance(validation_data, tuple) and len(validation_data) in (2, 3):
                vx, vy = validation_data[0], validation_data[1]
                vsw = validation_data[2] if len(validation_data) == 3 else None
                val = make_data(vx, vy, vsw, validation_batch_size or batch_size, False, validation_steps)
            else:
                val = make_data(validation_data, None, None, validation_batch_size or batch_size, False, validation_steps)
        steps = steps_per_epoch or getattr(data, "steps", None)
        verbose = _resolve_verbose(verbose)
        history = callbacks_module.History()
        cbs = callbacks_module.CallbackList(list(callbacks or []) + [history], self,
                                            {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        cbs.on_train_begin()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            cbs.on_epoch_begin(epoch)
            start = time.time()
            bar = _progress(verbose, steps, f"Epoch {epoch + 1}/{epochs}")
            seen = 0
            for step, (bx, by, bsw) in enumerate(data):
                if steps_per_epoch is not None and step >= steps_per_epoch:
                    break
                cbs.on_train_batch_begin(step)
                logs = self.train_step(_to_tensors(bx), _to_tensors(by) if by is not None else None,
                                       _to_tensors(bsw) if bsw is not None else None)
                cbs.on_train_batch_end(step, logs)
                seen += 1
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step + 1 == steps:
                        bar.set_postfix_str(_fmt(logs), refresh=False)
                if self.stop_training:
                    break
            if seen == 0:
                raise ValueError("fit: the data produced no batches (empty arrays, or an exhausted generator)")
            epoch_logs = dict(logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_data(val, cbs=None)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            if bar is not None:
                bar.set_postfix_str(_fmt(epoch_logs), refresh=True)
                bar.close()
            elif verbose == 2:
                print(f"Epoch {epoch + 1}/{epochs} - {time.time() - start:.0f}s - {_fmt(epoch_logs)}", flush=True)
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end(epoch_logs if logs else None)
        return history

    # -- evaluate / predict --
    def _evaluate_data(self, data, cbs=None, verbose=0):
        self._reset_metrics()
        bar = _progress(verbose, getattr(data, "steps", None), "Evaluate")
        logs = {}
        for step, (bx, by, bsw) in enumerate(data):
            if cbs is not None:
                cbs.on_test_batch_begin(step)
            logs = self.test_step(_to_tensors(bx), _to_tensors(by) if by is not None else None,
                                  _to_tensors(bsw) if bsw is not None else None)
            if cbs is not None:
                cbs.on_test_batch_end(step, logs)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.set_postfix_str(_fmt(logs))
            bar.close()
        if not logs:
            raise ValueError("evaluate: the data produced no batches")
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        self._require_compiled("evaluate")
        data = make_data(x, y, sample_weight, batch_size, False, steps)
        cbs = callbacks_module.CallbackList(callbacks, self, {"steps": steps, "verbose": verbose})
        cbs.on_test_begin()
        logs = self._evaluate_data(data, cbs, _resolve_verbose(verbose))
        cbs.on_test_end(logs)
        if return_dict:
            return logs
        vals = [logs[k] for k in self.metrics_names if k in logs]
        return vals[0] if len(vals) == 1 else vals

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        data = make_data(x, None, None, batch_size, False, steps)
        bar = _progress(_resolve_verbose(verbose), getattr(data, "steps", None), "Predict")
        outs = []
        for bx, _, _ in data:
            y = self.predict_step(_to_tensors(bx))
            outs.append(map_structure(lambda t: t.numpy(), y))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if not outs:
            raise ValueError("predict: the data produced no batches")
        first = outs[0]
        if isinstance(first, np.ndarray):
            return np.concatenate(outs)
        flat = [flatten(o) for o in outs]
        cat = [np.concatenate([f[i] for f in flat]) for i in range(len(flat[0]))]
        it = iter(cat)
        return map_structure(lambda _: next(it), first)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._require_compiled("train_on_batch")
        self._reset_metrics()
        if class_weight is not None:
            sample_weight = _class_weights_to_sample_weight(class_weight, map_structure(np.asarray, y), sample_weight)
        logs = self.train_step(_to_tensors(x), _to_tensors(y) if y is not None else None,
                               _to_tensors(sample_weight) if sample_weight is not None else None)
        return logs if return_dict else _flat_logs(self, logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled("test_on_batch")
        self._reset_metrics()
        logs = self.test_step(_to_tensors(x), _to_tensors(y) if y is not None else None,
                              _to_tensors(sample_weight) if sample_weight is not None else None)
        return logs if return_dict else _flat_logs(self, logs)

    def predict_on_batch(self, x):
        return map_structure(lambda t: t.numpy(), self.predict_step(_to_tensors(x)))


def _with_mask(sample_weight, mask, normalize=False):
    """Folds an output mask (e.g. padded timesteps) into the sample weights, as Keras does; with
    normalize, weights are rescaled so that a mean over all entries is a mean over the unmasked."""
    if mask is None:
        return sample_weight
    m = _m.cast(mask, "float32")
    if normalize:
        valid = float(_m.sum(m))
        m = _m.multiply(m, m.size / valid) if valid > 0 else m
    if sample_weight is None:
        return m
    sw = sample_weight if isinstance(sample_weight, Tensor) else convert_to_tensor(sample_weight, "float32")
    while sw.ndim < m.ndim:
        from ..backend.manipulation import expand_dims
        sw = expand_dims(sw, -1)
    return _m.multiply(m, sw)


def _flat_logs(model, logs):
    vals = [logs[k] for k in model.metrics_names if k in logs]
    return vals[0] if len(vals) == 1 else vals


def _batch_len(x):
    first = flatten(x)[0]
    return first.shape[0] if first.shape else 1


def _class_weights_to_sample_weight(class_weight, y, sw):
    if isinstance(y, (list, tuple, dict)):
        raise ValueError("class_weight is only supported for models with a single output")
    y = np.asarray(y)
    labels = y.argmax(-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0].astype(np.int64)
    w = np.array([class_weight.get(int(c), 1.0) for c in labels], np.float32)
    return w if sw is None else np.asarray(sw, np.float32) * w


def _resolve_verbose(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', received {verbose!r}")
    return verbose


def _progress(verbose, total, desc):
    if verbose != 1:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="step", leave=True, dynamic_ncols=True)


def _fmt(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())

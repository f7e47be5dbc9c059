"""compile / fit / evaluate / predict, as Keras's Trainer. fit is one loop over batches calling
`train_step(data)`; callbacks and the progress display live outside the step. A step takes one
batch as the data adapter yields it (x, (x, y) or (x, y, sample_weight)) and returns a dict of
results: tensors, read back to the host only when a callback, the progress bar or the epoch's
logs need them. Metrics keep their totals on the device."""
import functools
import inspect
import itertools
import queue
import threading
import types
import warnings

import numpy as np

from .._traceback import filter_traceback
from .. import callbacks as callbacks_module
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from ..backend import dtypes, math as _m, settings as _settings
from ..backend.autodiff import GradientTape, deferred_weight_gradients
from ..backend.manipulation import copy as _copy
from ..backend.device import _scope as _device_scope, asynchronous, current_device, device as device_scope
from ..backend.tensor import Tensor, convert_to_tensor
from ..callbacks import pythonify_logs
from ..layers import layer as _layer_module
from ..layers.layer import Layer, flatten, map_structure
from .compile_utils import CompileLoss, CompileMetrics
from .data import (ArrayData, class_weight_to_sample_weight, make_data, pack_x_y_sample_weight,
                   unpack_x_y_sample_weight)
from .progress import Progress, resolve_verbose, shown_by_callbacks
from . import replay as _replay
from ..distribute.strategy import batch_size_of, even_slices, get_strategy, slice_rows


# Overridden train_step / test_step / predict_step methods whose signature was checked, by class and name.
_CHECKED_STEPS = set()


def _user_step(model, name, api):
    """model's `name` step (train_step, test_step, predict_step), bound. An override must take one
    argument, the batch: Keras 3's JAX form `train_step(self, state, data)` (stateless_call,
    optimizer.stateless_apply, jax.value_and_grad) is refused with what to write instead, before a
    batch is made."""
    method = getattr(model, name)
    cls = type(model)
    if getattr(cls, name, None) is getattr(Trainer, name) or (cls, name) in _CHECKED_STEPS:
        return method
    try:
        sig = inspect.signature(method)
    except (TypeError, ValueError):  # a builtin or a C callable: nothing to check
        return method
    try:
        sig.bind(None)
    except TypeError:
        params = ", ".join(p for p in sig.parameters)
        if list(sig.parameters)[:2] == ["state", "data"]:
            what = {"train_step": "takes the gradients with lamina.GradientTape and applies them with "
                                  "self.optimizer.apply(grads, self.trainable_weights)",
                    "test_step": "calls self(x, training=False) and self.compute_loss",
                    "predict_step": "returns self(x, training=False)"}[name]
            raise TypeError(
                f"{api}: {cls.__name__}.{name}({params}) is Keras 3's stateless JAX form (state passed in and "
                f"returned, jax.value_and_grad, stateless_call); lamina calls {name}(data) with the batch only. "
                f"Write `def {name}(self, data):` that {what}, as in Keras's guide 'Customizing what happens "
                f"in fit()' for TensorFlow or PyTorch.") from None
        raise TypeError(f"{api}: {cls.__name__}.{name} must take one argument, the batch (data), as Keras's "
                        f"{name}(self, data) does; received the signature ({params})") from None
    _CHECKED_STEPS.add((cls, name))
    return method


class Trainer:
    def __init__(self):
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self.steps_per_execution = 1
        self._defer_results = False  # see _run_steps
        self._compiled = None  # compile()'s arguments, for the compile config of saved models
        self._compile_loss = self._compile_metrics = self._loss_tracker = None
        self._distribute_strategy = get_strategy()  # a model made in `with strategy.scope():`
        self._initial_epoch = None  # set by callbacks.BackupAndRestore: the epoch fit resumes from
        self.run_eagerly = False
        self._step_replay = None  # compile() makes one (models/replay.py)

    # -- Keras's jit_compile flag (reported only: lamina has no XLA) --
    def _all_layers_support_jit(self):
        return all(getattr(l, "supports_jit", True) for l in [self] + self._all_layers())

    @property
    def jit_compile(self):
        if self.__dict__.get("_jit_compile") is None:
            object.__setattr__(self, "_jit_compile", self._all_layers_support_jit())
        return self._jit_compile

    @jit_compile.setter
    def jit_compile(self, value):
        if value and not self._all_layers_support_jit():
            import warnings
            warnings.warn("Model doesn't support `jit_compile=True`. Proceeding with `jit_compile=False`.")
            value = False
        object.__setattr__(self, "_jit_compile", bool(value))

    # -- compile --
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """As Keras's. `loss` may be None when the model adds its own losses (`add_loss`) or
        overrides `train_step`. `steps_per_execution=N` runs N steps between the callbacks'
        batch hooks (and progress updates). Steps are replayed (models/replay.py), as Keras
        compiles them, unless `run_eagerly=True`. `jit_compile` (XLA) and `auto_scale_loss`
        (loss scaling under a mixed_float16 policy) are taken for Keras scripts' sake and change
        nothing here: there is no XLA, and no float16 policy (steps are replayed whatever
        jit_compile says). `model.jit_compile` reports what Keras would use: "auto" is True unless
        run_eagerly or a layer has supports_jit False (True with such a layer warns and is False)."""
        if jit_compile not in ("auto", True, False) or not isinstance(auto_scale_loss, bool):
            raise ValueError(f"compile: expected jit_compile 'auto', True or False and auto_scale_loss True or False, "
                             f"received jit_compile={jit_compile!r}, auto_scale_loss={auto_scale_loss!r}")
        self.optimizer = optimizers_module.get(optimizer)
        if loss is not None:
            for l in flatten(loss) if isinstance(loss, (list, tuple, dict)) else [loss]:
                if l is not None:
                    losses_module.get(l)  # fail early on unknown names
        if isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, (int, np.integer)) or \
                steps_per_execution < 1:
            raise ValueError(f"compile: steps_per_execution must be an int >= 1, received {steps_per_execution!r}")
        self.steps_per_execution = int(steps_per_execution)
        self._compiled = types.SimpleNamespace(loss=loss, loss_weights=loss_weights, metrics_spec=metrics,
                                               weighted_spec=weighted_metrics)
        # set past Layer.__setattr__: these are the trainer's metrics, not metrics the user tracks
        object.__setattr__(self, "_compile_loss",
                           CompileLoss(loss, loss_weights, self._output_names) if loss is not None else None)
        object.__setattr__(self, "_compile_metrics", CompileMetrics(metrics, weighted_metrics, self._output_names,
                                                                     loss=loss)
                           if metrics is not None or weighted_metrics is not None else None)
        object.__setattr__(self, "_loss_tracker", metrics_module.Mean(name="loss"))
        self._compute_loss_has_training = "training" in inspect.signature(self.compute_loss).parameters
        self.run_eagerly = bool(run_eagerly)  # True: no step replay (models/replay.py), as Keras's eager mode
        self.jit_compile = (not self.run_eagerly and self._all_layers_support_jit()) if jit_compile == "auto" \
            else bool(jit_compile) and not self.run_eagerly
        object.__setattr__(self, "_step_replay", _replay.StepReplay())
        self.compiled = True

    # -- metrics --
    @property
    def metrics(self):
        """As Keras's: the loss tracker, the compiled metrics (one "compile_metrics" entry), the
        per-output loss trackers, then the Metric objects assigned as attributes of the model and
        its layers."""
        out = []
        if self.compiled:
            out.append(self._loss_tracker)
            if self._compile_metrics is not None:
                out.append(self._compile_metrics)
            if self._compile_loss is not None:
                out.extend(self._compile_loss.metrics)
        if Layer._tracks_metrics:
            out.extend(self._metrics)
            for layer in self._layers:
                if not isinstance(layer, Trainer):  # a nested model's metrics are its own
                    out.extend(layer.metrics)
        return out

    @property
    def metrics_names(self):
        """The names of what evaluate() returns, in its order, as Keras's: the loss, compile()'s
        metrics (one output), the per-output losses, tracked metrics, then compile()'s metrics of
        a model with several outputs, sorted."""
        names, later = [], []
        for m in self.metrics:
            if isinstance(m, CompileMetrics):
                (names if m.single_output else later).extend(c.name for c in m.metrics)
            else:
                names.append(m.name)
        return names + sorted(later)

    def reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def get_metrics_result(self):
        """{name: result} for the metrics of `self.metrics` (a dict result is merged in)."""
        out = {}
        for m in self.metrics:
            r = m.result()
            if isinstance(r, dict):
                out.update(r)
            else:
                out[m.name] = r
        return out

    @property
    def compiled_metrics(self):
        """Keras 2's name: `self.compiled_metrics.update_state(y, y_pred)` updates compile()'s metrics."""
        return self._compile_metrics if self._compile_metrics is not None else CompileMetrics(None, None, list)

    def compiled_loss(self, y, y_pred, sample_weight=None, regularization_losses=None):
        """Keras 2's name: the total loss (compile()'s loss plus the model's own losses, so
        `regularization_losses` is not added again), and the "loss" metric updated with it."""
        loss = self.compute_loss(y=y, y_pred=y_pred, sample_weight=sample_weight)
        self._track_loss(loss, _batch_len(y_pred))
        return loss

    def _track_loss(self, loss, n):
        """The "loss" metric updated with a batch's loss, its state on the loss's device (Metric._follow)."""
        if isinstance(loss, Tensor):
            self._loss_tracker._follow(loss.device)
        self._loss_tracker.update_state(loss, sample_weight=n)

    # -- the steps --
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """compile()'s loss on (y, y_pred) plus the losses the model added during the call
        (`self.losses`: add_loss, activity and weight regularization)."""
        losses = []
        if self._compile_loss is not None:
            value = self._compile_loss(y, y_pred, sample_weight)
            if value is not None:
                losses.append(value)
        for extra in self.losses:
            extra = _m.cast(convert_to_tensor(extra), "float32")
            losses.append(_m.sum(extra) if extra.ndim else extra)
        if not losses:
            raise ValueError(f"Model '{self.name}' has no loss to compute: compile() was given no loss and the model "
                             "adds none (add_loss). Pass one, e.g. model.compile(optimizer='adam', loss='mse')")
        total = losses[0]
        for value in losses[1:]:  # losses of layers on other devices come to the first's
            total = _m.add(total, value if value.device is total.device else value.to(total.device))
        return total

    def _compute_loss(self, x, y, y_pred, sample_weight, training):
        if self._compute_loss_has_training:  # an override written before Keras 3.3 may lack it
            return self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates compile()'s metrics and returns the results of `self.metrics`."""
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)
        if self._defer_results:
            return None
        return self.get_metrics_result()

    def train_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        inside = self._metrics_in_step()

        def gradients():
            with GradientTape(_fused=True) as tape:  # gradients of variables only
                y_pred = self(x, training=True)
                loss = self._compute_loss(x, y, y_pred, sample_weight, training=True)
                scaled = self.optimizer.scale_loss(loss)  # loss_scale_factor; apply divides it out again
            tv = self.trainable_weights  # after the call: a subclassed model builds its weights in the first one
            grads = tape.gradient(scaled, tv)
            if inside:
                self._update_metrics(x, y, y_pred, loss, sample_weight)
            return y_pred, loss, tv, grads
        key = self._replay_key(data, extra=(inside,))
        y_pred, loss, tv, grads = gradients() if key is None else self._step_replay.run(key, _replay.batch_tensors(data),
                                                                                        gradients)
        self.optimizer.apply(grads, tv)
        if inside:
            return None if self._defer_results else self.get_metrics_result()
        self._track_loss(loss, _batch_len(x))
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def _metrics_in_step(self):
        """Whether the built-in train_step and test_step update the "loss" metric and compile()'s
        metrics among the kernels they replay (models/replay.py), as Keras's compiled step updates
        them, rather than from Python after it: with Keras's compute_metrics, and where every
        compiled metric is lamina's own (Metric._replays_with_step), as their updates issue the
        same kernels at every step. Others run after the step, their Python at every step."""
        if type(self).compute_metrics is not Trainer.compute_metrics:
            return False
        cm = self._compile_metrics
        return cm is None or all(m._replays_with_step() for m in cm.metrics)

    def _update_metrics(self, x, y, y_pred, loss, sample_weight):
        self._track_loss(loss, _batch_len(x))
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)

    def _replay_key(self, data, step="train_step", extra=()):
        """The signature under which a built-in step's kernels are recorded and replayed
        (models/replay.py): train_step's forward pass, loss and gradients, test_step's forward
        pass and loss, predict_step's forward pass; or None where they run as usual:
        run_eagerly, an overridden step, a distribution strategy, a loss-scaling optimizer
        (training), a batch that is not all tensors."""
        if self.run_eagerly or getattr(type(self), step) is not getattr(Trainer, step) or \
                self._distribute_strategy is not None or get_strategy() is not None:
            return None
        if step == "train_step":
            if not getattr(self.optimizer, "_replayable", True):
                return None
            weights = self.trainable_weights
        else:
            weights = self.weights
        if self._step_replay is None:  # predict on a model never compiled
            object.__setattr__(self, "_step_replay", _replay.StepReplay())
        return _replay.signature(_replay.batch_tensors(data), (step, id(self.optimizer)) + tuple(extra) +
                                 tuple(id(v) for v in weights))

    def test_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        inside = self._metrics_in_step()

        def forward():
            y_pred = self(x, training=False)
            loss = self._compute_loss(x, y, y_pred, sample_weight, training=False)
            if inside:
                self._update_metrics(x, y, y_pred, loss, sample_weight)
            return y_pred, loss
        key = self._replay_key(data, "test_step", extra=(inside,))
        y_pred, loss = forward() if key is None else self._step_replay.run(key, _replay.batch_tensors(data), forward)
        if inside:
            return None if self._defer_results else self.get_metrics_result()
        self._track_loss(loss, _batch_len(x))
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def predict_step(self, data):
        x, _, _ = unpack_x_y_sample_weight(data)
        if self._plain_predict() and hasattr(self, "_replayed_call"):
            # a model whose call replays itself (CallReplay: its layers' Python is the same at
            # every call) gets fresh outputs from it; otherwise the step is replayed here, then copied
            out = self._replayed_call(x, False, _replay.MAX_BYTES)
            if out is not _replay._MISS:
                return out
        key = self._replay_key(data, "predict_step")
        if key is None:
            return self(x, training=False)
        out = self._step_replay.run(key, _replay.batch_tensors(data), lambda: self(x, training=False))
        # a replay rewrites the same output tensors: the caller gets its own (predict_step may be
        # called directly, and an earlier result must keep its values)
        return map_structure(lambda t: _copy(t) if isinstance(t, Tensor) else t, out)

    def _pipelined_train_step(self, data, micro_batches):
        """GPipe: the batch is split into `micro_batches` slices (sizes differing by at most one)
        that stream through the model's devices one after the other, so while a later device
        works on slice m an earlier one works on slice m + 1 (every device runs queued during
        `fit`). Each slice's loss is weighted by its share of the batch and the gradients add up
        over the slices, so the one update equals the unsplit step's. The last stage defers its
        weight-gradient GEMMs to the end of the backward pass and the earlier stages form theirs
        at once, so the stages hand gradients on sooner and the next step's first slice starts on
        the first stage while the last one finishes ("zero-bubble" pipelining)."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        n = batch_size_of(x)

        def gradients():  # replayed as the plain step's (models/replay.py), metric updates included
            total, slices = None, []
            with GradientTape(_fused=True) as tape:  # gradients of variables only
                for a, b in even_slices(n, micro_batches):
                    xs, ys, sws = slice_rows(x, a, b), slice_rows(y, a, b), slice_rows(sample_weight, a, b)
                    y_pred = self(xs, training=True)
                    share = _m.multiply(self._compute_loss(xs, ys, y_pred, sws, training=True), (b - a) / n)
                    total = share if total is None else _m.add(total, share if share.device is total.device
                                                               else share.to(total.device))
                    slices.append((ys, y_pred, sws))
                scaled = self.optimizer.scale_loss(total)
            # the loss and metrics, once every slice's forward pass is queued and before the backward
            # pass: their variables may live on another device than the outputs, whose queue would
            # otherwise wait for each slice's outputs (stalling the pipeline) or, after the backward
            # pass, for the last stage's deferred work before starting the next step
            self._track_loss(total, n)
            if self._compile_metrics is not None:
                for ys, y_pred, sws in slices:
                    self._compile_metrics.update_state(ys, y_pred, sws)
            tv = self.trainable_weights
            # the weight-gradient GEMMs of the last stage (the loss's and outputs' devices) wait for
            # the end of the backward pass, so it hands its input gradients to the stage before
            # sooner and fills the pipeline's tail with them; the earlier stages, which wait for
            # the last one, form theirs at once (backend/autodiff.py, deferred_weight_gradients)
            last = {total.device} | {t.device for t in flatten(y_pred) if isinstance(t, Tensor)}
            with deferred_weight_gradients(last):
                return total, tv, tape.gradient(scaled, tv)
        # the loss and metrics update inside the replayed step (their updates issue the same
        # kernels at every step: no Python-side state decides them)
        key = self._replay_key(data, extra=("micro_batches", micro_batches))
        _, tv, grads = gradients() if key is None else self._step_replay.run(key, _replay.batch_tensors(data),
                                                                             gradients)
        self.optimizer.apply(grads, tv)
        return None if self._defer_results else self.get_metrics_result()

    # -- fit --
    @filter_traceback
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1,
            micro_batches=None):
        """As Keras's, plus `micro_batches=M` (lamina): a model placed on several devices
        (`with lamina.device(d):`) is pipelined, each batch streaming through its devices in M
        slices (see _pipelined_train_step). A model made in a distribution strategy's scope
        trains through the strategy (lamina.distribute)."""
        self._require_compiled("fit")
        strategy = self._distribute_strategy
        step_fn = self._fit_step_fn(micro_batches, strategy)
        data = make_data(x, y, sample_weight, batch_size, shuffle, steps_per_epoch, class_weight=class_weight)
        steps_per_epoch = _capped_steps(steps_per_epoch, data)
        cap = _settings.max_epochs()
        if cap is not None and cap < epochs:
            warnings.warn(f"Limiting epochs to {cap} (lamina.config.set_max_epochs / KERAS_MAX_EPOCHS)")
            epochs = cap
        if strategy is not None:
            data = strategy.distribute_data(data)
            if not strategy.is_chief:
                verbose = 0
        val = None
        if validation_split and validation_data is None:
            if not isinstance(data, ArrayData):
                raise ValueError("validation_split is only supported for array inputs, not generators or datasets; "
                                 "pass validation_data instead")
            val = data.split(validation_split)
        elif validation_data is not None:
            vx, vy, vsw = unpack_x_y_sample_weight(validation_data)
            val = make_data(vx, vy, vsw, validation_batch_size or batch_size, False, validation_steps)
        if val is not None:
            validation_steps = _capped_steps(validation_steps, val)
        steps = steps_per_epoch or data.steps
        verbose = resolve_verbose(verbose)
        history = callbacks_module.History()
        cbs = callbacks_module.CallbackList(list(callbacks or []) + [history], model=self, epochs=epochs,
                                            steps=steps, verbose=verbose)
        shown = verbose if not shown_by_callbacks(callbacks) else 0  # else a ProgbarLogger shows it
        self.stop_training = False
        with _FitScope(self, strategy, micro_batches):
            cbs.on_train_begin()
            # as Keras's fit: a callback (BackupAndRestore) that restored a backup sets where to resume.
            # Taken once (Keras keeps it, so a later fit of the same model without a backup would skip
            # those epochs too)
            initial_epoch, self._initial_epoch = self._initial_epoch or initial_epoch, None
            epoch_logs = {}
            for epoch in range(initial_epoch, epochs):
                self.reset_metrics()
                cbs.on_epoch_begin(epoch)
                progress = Progress(shown, steps, f"Epoch {epoch + 1}/{epochs}",
                                    header=f"Epoch {epoch + 1}/{epochs}" if epochs > 1 else None)
                data.on_epoch_begin()
                logs, ran = None, False
                # the next batches are sliced and converted on a background thread while a step runs
                # (not under a strategy: its data iterators take part in its collectives; not for
                # small arrays, whose copies cost less than handing them between threads; not when
                # the user's code makes them, which may draw from the seeded random streams)
                nbytes = data.batch_nbytes()
                place = self._batch_devices() if strategy is None else None
                with _prefetched(_executions(data, steps_per_epoch, self.steps_per_execution),
                                 strategy is None and not data.runs_user_code() and
                                 (nbytes is None or nbytes >= PREFETCH_MIN_BYTES),
                                 place=place) as executions:
                    for step, batches in executions:
                        cbs.on_train_batch_begin(step)
                        end = step + len(batches) - 1
                        logs = self._run_steps(step_fn, batches, cbs.wants("on_train_batch_end") or
                                               progress.wants(end + 1), place)
                        cbs.on_train_batch_end(end, logs)
                        progress.update(end + 1, logs)
                        ran = True
                        if self.stop_training:
                            break
                data.on_epoch_end()
                if not ran:
                    raise ValueError("fit: the data produced no batches (empty arrays, or an exhausted generator)")
                epoch_logs = pythonify_logs(logs if logs is not _DEFERRED else self.get_metrics_result())
                if val is not None and _should_eval(epoch, validation_freq):
                    val_logs = self._evaluate_data(val, cbs, validation_steps)
                    epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
                epoch_logs = cbs.on_epoch_end(epoch, epoch_logs)
                progress.close(epoch_logs)
                if self.stop_training:
                    break
            if epochs > initial_epoch:  # use_ema: the moving averages become the weights, as Keras's fit
                self.optimizer.finalize_variable_values(self.trainable_weights)
            cbs.on_train_end(epoch_logs)
            return history

    def _require_float(self, what):
        """Quantized (int8, int4) layers compute no gradients: training them is refused up front."""
        from .quantize import quantized_layers
        q = quantized_layers(self)
        if q:
            mode = q[0].quantization_mode
            raise RuntimeError(f"{what}: model '{self.name}' has quantized ({mode}) layers ({', '.join(l.name for l in q[:4])}"
                               f"{', ...' if len(q) > 4 else ''}); a quantized model is for inference (predict, "
                               f"evaluate). Train the float model, then call model.quantize('{mode}').")

    def _fit_step_fn(self, micro_batches, strategy):
        """The step fit runs: train_step, the pipelined step, or the strategy's."""
        self._require_float("fit")
        if micro_batches is not None and (isinstance(micro_batches, bool) or not isinstance(micro_batches, int)
                                          or micro_batches < 1):
            raise ValueError(f"fit: micro_batches must be an int >= 1, received {micro_batches!r}")
        custom = type(self).train_step is not Trainer.train_step
        if micro_batches not in (None, 1):
            if strategy is not None:
                raise ValueError("fit: micro_batches (pipelining) cannot be combined with a distribution strategy yet; "
                                 "use one or the other")
            if custom:
                raise ValueError(f"fit: micro_batches needs the built-in train_step, but {type(self).__name__} "
                                 "overrides train_step; split the batch in your own train_step instead")
            step = functools.partial(self._pipelined_train_step, micro_batches=micro_batches)
        elif strategy is not None:
            if custom:
                raise ValueError(f"fit: {type(strategy).__name__} runs its own training step, but "
                                 f"{type(self).__name__} overrides train_step; build the model outside the "
                                 "strategy's scope, or use the built-in train_step")
            step = functools.partial(strategy.train_step, self)
        else:
            return _user_step(self, "train_step", "fit")
        step.__name__ = "train_step"  # _run_steps defers results as for the built-in step
        return step

    # -- evaluate / predict --
    def _evaluate_data(self, data, cbs, steps=None, progress=None):
        self.reset_metrics()
        cbs.on_test_begin()
        data.on_epoch_begin()
        logs, ran = None, False
        place = self._batch_devices()
        test_step = _user_step(self, "test_step", "evaluate")
        for step, batches in _executions(data, steps, self.steps_per_execution):
            cbs.on_test_batch_begin(step)
            end = step + len(batches) - 1
            logs = self._run_steps(test_step, batches, cbs.wants("on_test_batch_end") or
                                   progress is not None and progress.wants(end + 1), place)
            cbs.on_test_batch_end(end, logs)
            if progress is not None:
                progress.update(end + 1, logs)
            ran = True
        data.on_epoch_end()
        if not ran:
            raise ValueError("evaluate: the data produced no batches")
        logs = pythonify_logs(logs if logs is not _DEFERRED else self.get_metrics_result())
        cbs.on_test_end(logs)
        if progress is not None:
            progress.close(logs)
        return logs

    @filter_traceback
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        self._require_compiled("evaluate")
        data = make_data(x, y, sample_weight, batch_size, False, steps)
        steps = _capped_steps(steps, data)
        verbose = resolve_verbose(verbose)
        total = steps or data.steps
        cbs = callbacks_module.CallbackList(callbacks, model=self, steps=total, verbose=verbose)
        shown = verbose if not shown_by_callbacks(callbacks) else 0
        logs = self._evaluate_data(data, cbs, steps, Progress(shown, total, "Evaluate"))
        return logs if return_dict else self._flatten_metrics_in_order(logs)

    @filter_traceback
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        data = make_data(x, None, None, batch_size, False, steps)
        steps = _capped_steps(steps, data)
        verbose = resolve_verbose(verbose)
        total = steps or data.steps
        cbs = callbacks_module.CallbackList(callbacks, model=self, steps=total, verbose=verbose)
        progress = Progress(verbose if not shown_by_callbacks(callbacks) else 0, total, "Predict")
        cbs.on_predict_begin()
        data.on_epoch_begin()
        outs = []
        place = self._batch_devices()
        predict_step = _user_step(self, "predict_step", "predict")
        for step, batches in _executions(data, steps, self.steps_per_execution):
            cbs.on_predict_batch_begin(step)
            for batch in batches:
                outs.append(map_structure(_numpy, predict_step(_to_tensors(batch, place))))
            end = step + len(batches) - 1
            cbs.on_predict_batch_end(end, {"outputs": outs[-1]})
            progress.update(end + 1)
        data.on_epoch_end()
        cbs.on_predict_end()
        progress.close()
        if not outs:
            raise ValueError("predict: the data produced no batches")
        first = outs[0]
        if isinstance(first, np.ndarray):
            return np.concatenate(outs)
        flat = [flatten(o) for o in outs]
        cat = [np.concatenate([f[i] for f in flat]) for i in range(len(flat[0]))]
        it = iter(cat)
        return map_structure(lambda _: next(it), first)

    @filter_traceback
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._require_compiled("train_on_batch")
        self._require_float("train_on_batch")
        self.reset_metrics()
        if class_weight is not None:
            sample_weight = class_weight_to_sample_weight(class_weight, y, sample_weight)
        logs = pythonify_logs(_user_step(self, "train_step", "train_on_batch")(_to_tensors(pack_x_y_sample_weight(x, y, sample_weight),
                                                          self._batch_devices())))
        return logs if return_dict else self._flatten_metrics_in_order(logs)

    @filter_traceback
    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled("test_on_batch")
        self.reset_metrics()
        logs = pythonify_logs(_user_step(self, "test_step", "test_on_batch")(_to_tensors(pack_x_y_sample_weight(x, y, sample_weight),
                                                         self._batch_devices())))
        return logs if return_dict else self._flatten_metrics_in_order(logs)

    @filter_traceback
    def predict_on_batch(self, x):
        if type(x) is np.ndarray and self._plain_predict():  # one array: straight to the call replay
            cr = self.__dict__.get("_call_replay")
            if cr is not None:
                out = cr.fast_host(x, False)
                if out is not None:
                    return out
        return map_structure(_numpy, _user_step(self, "predict_step", "predict_on_batch")(
            _to_tensors(pack_x_y_sample_weight(x), self._batch_devices())))

    def _plain_predict(self):
        """Whether predict_step is Keras's own here: not overridden, not eager, no strategy."""
        return type(self).predict_step is Trainer.predict_step and not self.run_eagerly and \
            self._distribute_strategy is None and get_strategy() is None

    # -- helpers --
    def _batch_devices(self):
        """Where fit, evaluate, predict and the *_on_batch methods put a batch: None inside `with
        lamina.device(d):` (on d, the current device) or under a distribution strategy; otherwise
        (device of x, device of y and the sample weights): the model's first and last placed
        layers' (made in a device scope, or holding weights), so that a model built on a GPU and
        trained outside the scope gets its batches copied there as they are prepared (on fit's
        prefetching thread, ahead of the step) rather than by the step's first layer and its loss.
        None too for a model none of whose layers is placed yet (it builds on the current device)."""
        if _device_scope.stack or self._distribute_strategy is not None or get_strategy() is not None:
            return None
        stamp = _layer_module._mutations
        cached = self.__dict__.get("_batch_place")
        if cached is not None and cached[0] == stamp:
            return cached[1]
        devs = [l._device for l in self._all_layers() if l._device is not None]
        place = (devs[0], devs[-1]) if devs else None
        object.__setattr__(self, "_batch_place", (stamp, place))  # past Layer.__setattr__: not a mutation
        return place

    def _run_steps(self, step_fn, batches, want_logs, place=None):
        """Runs `step_fn` (train_step or test_step) on each batch and returns the last one's logs.
        Keras's own steps compute their results (metric `result()`s) only where they are read:
        for the last batch of the group when `want_logs`; otherwise this returns _DEFERRED and the
        loop reads the metrics when it needs them (at the epoch's end)."""
        own = getattr(type(self), step_fn.__name__) is getattr(Trainer, step_fn.__name__) and \
            type(self).compute_metrics is Trainer.compute_metrics
        try:
            for i, batch in enumerate(batches):
                self._defer_results = own and (i + 1 < len(batches) or not want_logs)
                logs = step_fn(_to_tensors(batch, place))
        finally:
            self._defer_results = False
        return _DEFERRED if logs is None and own else logs

    def _flatten_metrics_in_order(self, logs):
        """The logs as a list in `metrics_names` order, then any other keys sorted (a single value
        alone), as Keras's evaluate returns them."""
        if len(logs) == 1:
            return next(iter(logs.values()))
        names = self.metrics_names
        vals = [logs[k] for k in names if k in logs] + [logs[k] for k in sorted(logs) if k not in names]
        return vals[0] if len(vals) == 1 else vals

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


_DEFERRED = {}  # what _run_steps returns for a step whose results were not computed


def _capped_steps(steps, data):
    """`steps` of an epoch of fit / evaluate / predict under lamina.config.set_max_steps_per_epoch
    (KERAS_MAX_STEPS_PER_EPOCH): at most the cap (the data's own number of batches, where known and
    smaller, is left as it is)."""
    cap = _settings.max_steps_per_epoch()
    if cap is None or (steps or data.steps or cap + 1) <= cap:
        return steps
    warnings.warn(f"Limiting steps_per_epoch to {cap} (lamina.config.set_max_steps_per_epoch / "
                  "KERAS_MAX_STEPS_PER_EPOCH)")
    return cap


class _FitScope:
    """Around fit's epochs: a strategy's begin/end hooks, and for a pipelined fit every device
    of the model running queued (so the calling thread only queues work)."""

    def __init__(self, model, strategy, micro_batches):
        self.model, self.strategy = model, strategy
        self.devices = None
        if micro_batches not in (None, 1):
            self.devices = _model_devices(model)

    def __enter__(self):
        if self.strategy is not None:
            self.strategy.on_fit_begin(self.model)
        if self.devices:
            self._async = asynchronous(self.devices)
            self._async.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            if self.devices:
                self._async.__exit__(*exc)
        finally:
            if self.strategy is not None:
                self.strategy.on_fit_end(self.model)
        return False


def _model_devices(model):
    """The devices of the model's layers and weights, and the current one (where data arrives)."""
    devs = {current_device().name: current_device()}
    for w in model.weights:
        devs.setdefault(w.device.name, w.device)
    for layer in model._all_layers():
        if layer._device is not None:
            devs.setdefault(layer._device.name, layer._device)
    return list(devs.values())


def _executions(data, limit, n):
    """The batches of one epoch (at most `limit`), `n` at a time (steps_per_execution): yields
    (index of the first step, [batches])."""
    it = iter(data) if limit is None else itertools.islice(data, limit)
    step = 0
    while True:
        group = list(itertools.islice(it, n))
        if not group:
            return
        yield step, group
        step += len(group)


# Array batches smaller than this are converted on the calling thread: measured on Zen 5, for a
# 100 KB batch (32 MNIST images) handing it over from the prefetch thread cost ~20 us per step,
# more than slicing and copying it (~5 us); from about a megabyte on, the copy is worth overlapping.
PREFETCH_MIN_BYTES = 1 << 20


class _prefetched:
    """`with _prefetched(executions) as it:` iterates (step, [batches]) groups as `executions`
    yields them, with the batches converted to tensors by a background thread that runs up to
    `depth` groups ahead (NumPy's slicing and lamina's copies release the GIL, so this overlaps
    the step running on the calling thread). The thread places the tensors as _to_tensors does with
    `place`, or with None on the device current where the `with` starts. An exception raised while producing a batch is raised by the
    iteration, at that batch, with its traceback; leaving the `with` early (a callback stopped
    training, or the step raised) stops the thread and waits for it, so the data is never read by
    two threads at once. `enabled=False` iterates on the calling thread (batches converted by
    the step, as before)."""

    _END = object()

    def __init__(self, executions, enabled=True, depth=2, place=None):
        self.executions, self.enabled, self.depth, self.place = executions, enabled, depth, place
        self.thread = None

    def __enter__(self):
        if not self.enabled:
            return self.executions
        self.queue = queue.Queue(self.depth)
        self.stop = threading.Event()
        self.device = current_device()
        self.thread = threading.Thread(target=self._produce, name="lamina-fit-prefetch", daemon=True)
        self.thread.start()
        return self._consume()

    def _put(self, item):
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self):
        try:
            with device_scope(self.device.name):
                for step, batches in self.executions:
                    if not self._put((step, [_to_tensors(b, self.place) for b in batches])):
                        return
        except BaseException as e:  # raised in the consumer, at this point of the data
            self._put((_prefetched._END, e))
            return
        self._put((_prefetched._END, None))

    def _consume(self):
        while True:
            step, item = self.queue.get()
            if step is _prefetched._END:
                if item is not None:
                    raise item
                return
            yield step, item

    def __exit__(self, *exc):
        if self.thread is not None:
            self.stop.set()
            while self.thread.is_alive():
                try:  # unblock a producer waiting for room
                    self.queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self.thread.join()
        return False


def _should_eval(epoch, validation_freq):
    if isinstance(validation_freq, int):
        return (epoch + 1) % validation_freq == 0
    if isinstance(validation_freq, (list, tuple)):
        return epoch + 1 in validation_freq
    raise ValueError(f"validation_freq must be an int or a list of epochs, received {validation_freq!r}")


def _to_tensors(batch, place=None):
    """A batch's arrays as tensors; string data (for a model's string inputs) stays numpy. place:
    None (made on the current device; tensors stay where they are) or (device, device): x's arrays
    and tensors on the first, y's and the sample weights' on the second (Trainer._batch_devices).
    The batch is x, (x,), (x, y) or (x, y, sample_weight), as unpack_x_y_sample_weight reads it."""
    if place is None:
        return map_structure(lambda a: a if a is None or isinstance(a, Tensor) or dtypes.is_string_data(a)
                             else convert_to_tensor(a), batch)
    if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3:
        parts = [_placed(part, place[0] if i == 0 else place[1]) for i, part in enumerate(batch)]
        return parts if type(batch) is list else tuple(parts)
    return _placed(batch, place[0])


def _placed(data, dev):
    return map_structure(lambda a: a if a is None or dtypes.is_string_data(a) else
                         (a if a.device is dev else a.to(dev)) if isinstance(a, Tensor) else
                         convert_to_tensor(a, device=dev), data)


def _numpy(t):
    return t.numpy() if isinstance(t, Tensor) else np.asarray(t)


def _batch_len(x):
    first = next((t for t in flatten(x) if t is not None), None)
    return first.shape[0] if first is not None and first.shape else 1

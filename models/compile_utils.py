"""The losses and metrics given to compile(), matched to the model's outputs on first use, as
Keras's `CompileLoss` and `CompileMetrics`. An output's mask (padded timesteps) is folded into
the sample weights of its loss and metrics."""
from .. import losses as losses_module
from .. import metrics as metrics_module
from ..backend import math as _m
from ..backend.tensor import Tensor, convert_to_tensor
from ..layers.layer import flatten


def _per_output(spec, what, output_names):
    """`spec` (one value, a list with one entry per output, or a dict by output name) as a list
    with one entry per output."""
    n = len(output_names)
    if isinstance(spec, dict):
        unknown = set(spec) - set(output_names)
        if unknown:
            raise ValueError(f"compile: {what} has keys {sorted(unknown)} that are not output names {output_names}")
        return [spec.get(k) for k in output_names]
    if isinstance(spec, (list, tuple)) and n > 1 and what in ("loss", "loss_weights"):
        if len(spec) != n:
            raise ValueError(f"compile: {len(spec)} {what} given for {n} outputs {output_names}")
        return list(spec)
    if isinstance(spec, (list, tuple)) and what != "loss" and n > 1 and spec and \
            all(isinstance(s, (list, tuple)) or s is None for s in spec):
        return list(spec)
    return [spec] * n


def _resolve_names(output_names, y_pred):
    """The model's output names, or output_0, output_1, ... when they do not match what it returned
    (a subclassed model)."""
    names = output_names()
    n = len(flatten(y_pred))
    return names if len(names) == n else [f"output_{i}" for i in range(n)]


def _check_targets(output_names, y_true, losses=None):
    """y_true as one target per output. As in Keras, fewer targets than outputs go, in order, to the
    outputs that have a loss when `losses` (one entry per output) leaves the others None
    (`loss=[fn, None]` with one y); those outputs get None."""
    yt = flatten(y_true) if y_true is not None else None
    n = len(output_names)
    if yt is not None and len(yt) == n:
        return yt
    if yt is not None and losses is not None:
        with_loss = [i for i, fn in enumerate(losses) if fn is not None]
        if len(with_loss) < n and len(yt) == len(with_loss):
            matched = [None] * n
            for i, t in zip(with_loss, yt):
                matched[i] = t
            return matched
    got = "no targets (y is None)" if yt is None else f"{len(yt)} target array(s)"
    raise ValueError(f"The model has {len(output_names)} output(s) {output_names} but {got} were given; give one "
                     "target per output, or one per output that has a loss (compile(loss=[..., None]) leaves an "
                     "output without one)")


def _on_device(t, dev):
    """A tensor moved to `dev` (differentiably); anything else as it is."""
    return t.to(dev) if isinstance(t, Tensor) and t.device is not dev else t


def with_mask(sample_weight, mask, normalize=False):
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


class CompileLoss:
    """compile()'s `loss` and `loss_weights`: `__call__(y_true, y_pred, sample_weight)` is the
    weighted sum over outputs. With several outputs, `metrics` holds one Mean per output
    ("<output>_loss"), updated with that output's unweighted loss."""

    def __init__(self, loss, loss_weights, output_names):
        self.loss, self.loss_weights = loss, loss_weights
        self._output_names = output_names  # a function: the model's output names, known once it is built
        self.metrics = []
        self.built = False

    def build(self, y_true, y_pred):
        names = _resolve_names(self._output_names, y_pred)
        self.losses = [losses_module.get(l) for l in _per_output(self.loss, "loss", names)]
        lw = self.loss_weights
        self.weights = _per_output(lw, "loss_weights", names) if lw is not None else [1.0] * len(names)
        self.output_names = names
        # one Mean per output that has a loss, when more than one has (Keras: "<output>_loss")
        with_loss = [i for i, fn in enumerate(self.losses) if fn is not None]
        self.metrics = [metrics_module.Mean(name=f"{names[i]}_loss") for i in with_loss] if len(with_loss) > 1 else []
        self._metric_of = {i: self.metrics[k] for k, i in enumerate(with_loss)} if self.metrics else {}
        self.built = True

    def __call__(self, y_true, y_pred, sample_weight=None):
        if not self.built:
            self.build(y_true, y_pred)
        yt, yp = _check_targets(self.output_names, y_true, self.losses), flatten(y_pred)
        total = None
        for i, (fn, w) in enumerate(zip(self.losses, self.weights)):
            if fn is None:
                continue
            sw = sample_weight[i] if isinstance(sample_weight, (list, tuple)) else sample_weight
            dev = yp[i].device  # targets and weights go to the output's device (model parallelism)
            yt_i, sw = _on_device(yt[i], dev), _on_device(sw, dev)
            sw = with_mask(sw, getattr(yp[i], "_keras_mask", None), normalize=True)
            if isinstance(fn, losses_module.Loss):
                value = fn(yt_i, yp[i], sample_weight=sw)
            else:
                value = losses_module.reduce_values(fn(yt_i, yp[i]), sw)
            tracker = self._metric_of.get(i)
            if tracker is not None:
                tracker._follow(value.device)
                tracker.update_state(value, sample_weight=yp[i].shape[0] if yp[i].shape else 1)
            term = _m.multiply(value, float(w)) if w != 1.0 else value
            total = term if total is None else _m.add(total, _on_device(term, total.device))
        return total


class CompileMetrics(metrics_module.Metric):
    """compile()'s `metrics` and `weighted_metrics` as one metric named "compile_metrics" (as in
    Keras 3): `update_state(y_true, y_pred, sample_weight)` updates them all, `result()` is a
    dict {name: value}; names take an "<output>_" prefix when the model has several outputs.
    `loss`: compile()'s loss, which says which outputs fewer targets than outputs belong to."""

    def __init__(self, metrics, weighted_metrics, output_names, loss=None):
        super().__init__(name="compile_metrics")
        self.metrics_spec, self.weighted_spec = metrics, weighted_metrics
        self._loss_spec = loss
        self._losses = None  # compile()'s loss, one entry per output, once built
        self._output_names = output_names
        self._flat = []  # (output index, metric, weighted)
        self.single_output = True
        self.built = False

    @property
    def metrics(self):
        return [m for _, m, _ in self._flat]

    def build(self, y_true, y_pred):
        names = _resolve_names(self._output_names, y_pred)
        if self._loss_spec is not None:
            self._losses = _per_output(self._loss_spec, "loss", names)
        yt, yp = _check_targets(names, y_true, self._losses), flatten(y_pred)
        n = len(names)
        self.single_output = n == 1
        prefix = (lambda name, i: f"{names[i]}_{name}") if n > 1 else (lambda name, i: name)
        for spec, weighted in ((self.metrics_spec, False), (self.weighted_spec, True)):
            for i, ms in enumerate(_per_output(spec or [], "weighted_metrics" if weighted else "metrics", names)):
                for m in ms if isinstance(ms, (list, tuple)) else [ms] if ms is not None else []:
                    if yt[i] is None:
                        raise ValueError(f"compile: metric {m!r} is given for output '{names[i]}', which has no "
                                         "target (its loss is None and fewer targets than outputs were given)")
                    obj = metrics_module.get(m, yt[i], yp[i])
                    obj.name = prefix(m if isinstance(m, str) else obj.name, i)  # "mae" logs as "mae", as Keras
                    self._flat.append((i, obj, weighted))
        self.built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self.built:
            self.build(y_true, y_pred)
        yt, yp = flatten(y_true), flatten(y_pred)
        if len(yt) != len(yp) and self._losses is not None:
            yt = _check_targets([None] * len(yp), y_true, self._losses)
        for i, m, weighted in self._flat:
            sw = sample_weight if weighted else None
            if isinstance(sw, (list, tuple)):
                sw = sw[i]
            # the state of a metric made outside any device scope moves to the output's device
            # once; one made in a scope stays there, and its inputs go to it (model parallelism)
            m._follow(yp[i].device)
            dev = m.variables[0].device if m.variables else yp[i].device
            pred = _on_device(yp[i], dev)
            mask = _on_device(getattr(yp[i], "_keras_mask", None), dev)
            m.update_state(_on_device(yt[i], dev), pred, sample_weight=with_mask(_on_device(sw, dev), mask))

    def result(self):
        return {m.name: m.result() for _, m, _ in self._flat}

    def reset_state(self):
        for _, m, _ in self._flat:
            m.reset_state()

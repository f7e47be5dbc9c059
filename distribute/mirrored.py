"""MirroredStrategy: synchronous data parallelism over the devices of one machine.

    strategy = lamina.distribute.MirroredStrategy(["cpu:0", "cpu:1"])
    with strategy.scope():
        model = keras.Sequential([...])
        model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=64)

The model built in the scope lives on the first device. `fit` makes one replica of it on each
other device (same architecture and weights), splits every batch between the replicas, runs
their forward and backward passes at the same time (each device on its own worker), sums the
gradients on the first device, applies one optimizer update there and copies the new weights
to the replicas. Each replica's loss is weighted by its share of the batch, so a step equals one
step of the single-device model on the whole batch (within float rounding). BatchNormalization's
moving statistics are those of the first device's share. evaluate and predict run on the
first device.
"""
from ..backend.autodiff import GradientTape
from ..backend import math as _m
from ..backend.device import asynchronous, get_device
from ..backend.tensor import Variable
from ..models.data import unpack_x_y_sample_weight
from .strategy import Strategy, batch_size_of, even_slices, slice_rows


class MirroredStrategy(Strategy):
    def __init__(self, devices=None):
        if devices is None:
            from ..backend.device import list_devices
            devices = list_devices("gpu") or ["cpu:0"]
        if isinstance(devices, str) or not isinstance(devices, (list, tuple)) or not devices:
            raise ValueError(f"MirroredStrategy: expected a list of device names such as ['cpu:0', 'cpu:1'], "
                             f"received {devices!r}")
        self.devices = [get_device(d) for d in devices]
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError(f"MirroredStrategy: each device may appear once, received {names}")
        self._replicas = {}  # id(model) -> [replica model per extra device]

    @property
    def num_replicas_in_sync(self):
        return len(self.devices)

    def scope(self):
        scope = super().scope()
        return _DeviceAndStrategyScope(scope, self.devices[0])

    def __repr__(self):
        return f"MirroredStrategy({[d.name for d in self.devices]})"

    # -- fit hooks --
    def on_fit_begin(self, model):
        if model.optimizer is None:
            raise RuntimeError("MirroredStrategy: compile the model before fit")
        self._async = asynchronous(self.devices)
        self._async.__enter__()

    def on_fit_end(self, model):
        self._async.__exit__(None, None, None)

    def _replica(self, model, dev):
        from ..models.cloning import clone_model
        from ..backend.device import device as device_scope
        try:
            with device_scope(dev):
                rep = clone_model(model)
        except (TypeError, ValueError) as e:
            raise ValueError(f"MirroredStrategy needs a Sequential or functional model it can replicate: {e}") from e
        c = model._compiled
        rep.compile(optimizer="sgd", loss=c.loss, loss_weights=c.loss_weights)
        _sync_weights(model, rep)
        return rep

    def train_step(self, model, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        n = batch_size_of(x)
        parts = even_slices(n, len(self.devices))
        total, summed = None, None
        for i, (a, b) in enumerate(parts):
            if i == 1 and id(model) not in self._replicas:  # the model is built by now: replicate it
                self._replicas[id(model)] = [self._replica(model, d) for d in self.devices[1:]]
            rep = model if i == 0 else self._replicas[id(model)][i - 1]
            xs, ys, sws = slice_rows(x, a, b), slice_rows(y, a, b), slice_rows(sample_weight, a, b)
            with GradientTape() as tape:
                y_pred = rep(xs, training=True)
                loss = rep._compute_loss(xs, ys, y_pred, sws, training=True)
                share = _m.multiply(loss, (b - a) / n)
                scaled = model.optimizer.scale_loss(share)  # loss_scale_factor; apply divides it out
            grads = tape.gradient(scaled, rep.trainable_weights)
            primary = model.trainable_weights
            if model._compile_metrics is not None:
                model._compile_metrics.update_state(ys, y_pred, sws)
            home = primary[0].device if primary else share.device
            share = share if share.device is home else share.to(home)
            total = share if total is None else _m.add(total, share)
            if summed is None:
                summed = list(grads)
            else:  # the all-reduce: each replica's gradient comes to the first device and is added
                summed = [s if g is None else (g.to(v.device) if s is None else _m.add(s, g.to(v.device)))
                          for s, g, v in zip(summed, grads, primary)]
        model._loss_tracker.update_state(total, sample_weight=n)
        model.optimizer.apply(summed, primary)
        for rep in self._replicas.get(id(model), []):  # every replica, used this step or not
            _sync_weights(model, rep)
        return None if model._defer_results else model.get_metrics_result()


def _sync_weights(src, dst):
    """Copies every weight of `src` into the same weight of `dst` (on dst's device)."""
    sw, dw = src.weights, dst.weights
    if len(sw) != len(dw):
        raise RuntimeError(f"MirroredStrategy: the replica has {len(dw)} weights, the model {len(sw)}")
    for s, d in zip(sw, dw):
        Variable.copy_from(d, s)


class _DeviceAndStrategyScope:
    """strategy.scope(): the strategy and its first device, so the model's weights go there."""

    def __init__(self, scope, dev):
        from ..backend.device import device as device_scope
        self._scopes = [scope, device_scope(dev)]

    def __enter__(self):
        for s in self._scopes:
            s.__enter__()
        return self._scopes[0].strategy

    def __exit__(self, *exc):
        for s in reversed(self._scopes):
            s.__exit__(*exc)
        return False

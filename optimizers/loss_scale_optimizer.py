"""LossScaleOptimizer: dynamic loss scaling around another optimizer."""
import numpy as np

from ..backend import math as _m
from ..backend import sparse as _sparse
from .optimizer import Optimizer

_f32 = np.float32

# arguments of the base optimizer Keras still accepts in a config, at their defaults only
_BASE_DEFAULTS = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                  "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
                  "gradient_accumulation_steps": None}


class OffsetStore:
    """The part of a variable store (`save_own_variables`' dict-like "0", "1", ...) from key
    `offset` on, numbered from 0: an optimizer nested in another writes and reads its own
    variables through it, in the place Keras gives them in the outer optimizer's list."""

    def __init__(self, store, offset, count=None):
        self._store, self._offset, self._count = store, offset, count

    def __setitem__(self, key, value):
        self._store[str(int(key) + self._offset)] = value

    def __getitem__(self, key):
        return self._store[str(int(key) + self._offset)]

    def keys(self):
        n = len(self._store.keys()) - self._offset
        n = n if self._count is None else min(n, self._count)
        return [str(i) for i in range(max(n, 0))]


def own_variable_count(optimizer):
    """How many entries `optimizer.save_own_variables` writes."""
    store = {}
    optimizer.save_own_variables(store)
    return len(store)


def check_inner(optimizer, who):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{who}: expected a lamina Optimizer instance (e.g. lamina.optimizers.Adam()), received "
                        f"{type(optimizer).__name__} {optimizer!r}")


def finite(grads):
    """Whether every gradient is finite (one host read per gradient, stopping at the first bad one)."""
    for g in grads:
        if g is None:
            continue
        t = g.values if _sparse.is_indexed_slices(g) else g
        if not bool(_m.all(_m.isfinite(t)).numpy()):
            return False
    return True


class LossScaleOptimizer(Optimizer):
    """As Keras's `LossScaleOptimizer`: `scale_loss(loss)` multiplies the loss by a dynamic scale;
    `apply` divides the gradients by it and hands them to `inner_optimizer`, unless one is not
    finite: then the step is skipped and the scale halved. After `dynamic_growth_steps` finite
    steps in a row the scale doubles. The learning rate and iteration count are the inner
    optimizer's; its own `loss_scale_factor` is switched off (it would scale twice)."""

    _replayable = False  # the scale changes between steps: train steps are not replayed (models/replay.py)

    def __init__(self, inner_optimizer, initial_scale=2.0 ** 15, dynamic_growth_steps=2000, name=None, **kwargs):
        if not kwargs.pop("dynamic", True):
            raise ValueError("LossScaleOptimizer no longer supports `dynamic=False` (as Keras 3). Instead, set "
                             "`loss_scale_factor` directly on the inner optimizer.")
        for arg, default in _BASE_DEFAULTS.items():
            if arg in kwargs and kwargs.pop(arg) != default:
                raise ValueError(f"LossScaleOptimizer does not support `{arg}`. Instead, set `{arg}` on the "
                                 "`inner_optimizer`.")
        if kwargs:
            raise ValueError(f"LossScaleOptimizer does not support arguments: `{'`, `'.join(kwargs)}`.")
        check_inner(inner_optimizer, "LossScaleOptimizer")
        if isinstance(inner_optimizer, LossScaleOptimizer):
            raise ValueError("LossScaleOptimizer: the inner optimizer is already a LossScaleOptimizer; wrap the "
                             "plain optimizer once")
        if isinstance(initial_scale, bool) or not isinstance(initial_scale, (int, float)) or not initial_scale > 0:
            raise ValueError(f"LossScaleOptimizer: initial_scale must be a positive number, received {initial_scale!r}")
        if isinstance(dynamic_growth_steps, bool) or not isinstance(dynamic_growth_steps, (int, np.integer)) or \
                dynamic_growth_steps < 1:
            raise ValueError("LossScaleOptimizer: dynamic_growth_steps must be an int >= 1, received "
                             f"{dynamic_growth_steps!r}")
        super().__init__(learning_rate=0.0, name=name or "loss_scale_optimizer")  # Keras's default name
        self.inner_optimizer = inner_optimizer
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        self.inner_optimizer.loss_scale_factor = None
        self._scale = _f32(initial_scale)
        self._counter = 0

    @property
    def dynamic_scale(self):
        """The current loss scale (float32)."""
        return self._scale

    @property
    def step_counter(self):
        """Finite steps since the scale last changed."""
        return self._counter

    def build(self, variables):
        self.inner_optimizer.build(variables)
        super().build(variables)

    @property
    def variables(self):
        return self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @iterations.setter
    def iterations(self, value):
        self.inner_optimizer.iterations = value

    def scale_loss(self, loss):
        return _m.multiply(loss, float(self._scale if self.built else _f32(self.initial_scale)))

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if trainable_variables is None:
            trainable_variables = self.inner_optimizer._variables
        if not self.built:
            self.build(list(trainable_variables))
        if finite(grads):
            scale = float(self._scale)
            unscaled = [g if g is None else _sparse.with_values(g, _m.divide(g.values, scale))
                        if _sparse.is_indexed_slices(g) else _m.divide(g, scale) for g in grads]
            self.inner_optimizer.apply(unscaled, trainable_variables)
            if self._counter == self.dynamic_growth_steps - 1:
                self._counter, self._scale = 0, _f32(self._scale * _f32(2))
            else:
                self._counter += 1
        else:
            self._counter, self._scale = 0, _f32(self._scale * _f32(0.5))

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    # Keras's saved layout (its `variables`): its own iteration (never advanced) and learning rate
    # (0), once built the step counter and the scale, then the inner optimizer's variables
    def _head(self):
        return 4 if self.built else 2

    def save_own_variables(self, store):
        store["0"] = np.asarray(0, np.int64)
        store["1"] = np.asarray(0.0, np.float32)
        if self.built:
            store["2"] = np.asarray(self._counter, np.int64)
            store["3"] = np.asarray(self._scale, np.float32)
        self.inner_optimizer.save_own_variables(OffsetStore(store, self._head()))

    def load_own_variables(self, store):
        """Reads what save_own_variables (or Keras) wrote. A built optimizer also takes a file saved
        before it was built (no step counter or scale: those stay at their start), as a plain
        optimizer takes a file without slots."""
        head, n = self._head(), len(store.keys())
        if self.built and n == 2 + (2 if self.inner_optimizer._lr_is_variable() else 1):
            self.inner_optimizer.load_own_variables(OffsetStore(store, 2))   # its iteration and learning rate
            return
        if n < head:
            own = "iteration, learning rate, step counter, dynamic scale" if self.built else \
                "iteration, learning rate; not built: no step counter or scale yet"
            raise ValueError(f"LossScaleOptimizer '{self.name}': expected its {head} own variables ({own}) then the "
                             f"inner optimizer's; the file has {n}")
        # the inner optimizer first: it checks everything before it changes anything, so that a
        # mismatch leaves this optimizer as it was
        self.inner_optimizer.load_own_variables(OffsetStore(store, head))
        if self.built:
            self._counter = int(np.asarray(store["2"]))
            self._scale = _f32(np.asarray(store["3"]))

    def get_config(self):
        from ..saving import serialize_keras_object
        return {"name": self.name, "inner_optimizer": serialize_keras_object(self.inner_optimizer),
                "initial_scale": self.initial_scale, "dynamic_growth_steps": self.dynamic_growth_steps}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving import deserialize_keras_object
        config = dict(config)
        inner = config.pop("inner_optimizer")
        if isinstance(inner, dict):
            inner = deserialize_keras_object(inner, custom_objects=custom_objects)
        return cls(inner, **config)

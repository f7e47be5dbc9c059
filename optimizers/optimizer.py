"""The optimizer base class: slots built per variable, gradient clipping, a learning rate or
schedule, and `update_step(grad, var, lr)` implemented by each optimizer with one fused kernel."""
import numpy as np

from ..backend import math as _m
from ..backend import sparse as _sparse
from ..backend.autodiff import no_grad
from ..backend.device import device as device_scope
from ..backend.tensor import Variable
from . import schedules


class Optimizer:
    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unrecognized keyword argument(s) {sorted(kwargs)}")
        if use_ema:
            raise ValueError(f"{type(self).__name__}: use_ema is not supported by lamina")
        for arg, value in (("loss_scale_factor", loss_scale_factor),
                           ("gradient_accumulation_steps", gradient_accumulation_steps)):
            if value is not None:
                raise ValueError(f"{type(self).__name__}: {arg}={value!r} is not supported by lamina; leave it None")
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError(f"{type(self).__name__}: only one of clipnorm and global_clipnorm can be set, "
                             f"received clipnorm={clipnorm}, global_clipnorm={global_clipnorm}")
        for n, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if v is not None and v <= 0:
                raise ValueError(f"{type(self).__name__}: {n} must be positive, received {v}")
        self.name = name or type(self).__name__.lower()
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        if isinstance(learning_rate, dict):
            learning_rate = schedules.deserialize(learning_rate)
        if not isinstance(learning_rate, schedules.LearningRateSchedule) and not callable(learning_rate):
            learning_rate = float(learning_rate)
            if learning_rate < 0:
                raise ValueError(f"{type(self).__name__}: learning_rate must be >= 0, received {learning_rate}")
        self._learning_rate = learning_rate
        self.iterations = 0
        self.built = False
        self._variables = []     # the trained variables, in build order
        self._index = {}         # id(variable) -> position
        self._slots = []         # one list of slot Variables per trained variable

    # -- learning rate --
    @property
    def learning_rate(self):
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            return float(lr(self.iterations))
        if callable(lr):
            return float(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            raise TypeError("This optimizer's learning rate is a schedule; it cannot be set to a number. "
                            "Create the optimizer with a float learning rate to change it during training.")
        self._learning_rate = float(value)

    # -- slots --
    def slot_names(self):
        return []

    def build(self, variables):
        for v in variables:
            if id(v) in self._index:
                continue
            self._index[id(v)] = len(self._variables)
            self._variables.append(v)
            with device_scope(v.device):
                self._slots.append([self._make_slot(v, n) for n in self.slot_names()])
        self.built = True

    def _make_slot(self, var, slot_name):
        s = Variable(_m.zeros(var.shape), trainable=False, name=f"{var.path.replace('/', '_')}_{slot_name}")
        return s

    def slots_of(self, var):
        return self._slots[self._index[id(var)]]

    @property
    def variables(self):
        """State for saving: the iteration count then every slot, in build order."""
        return [s for slots in self._slots for s in slots]

    # -- saved state: Keras's layout, [iteration, learning_rate (unless a schedule), slots...] --
    def _slot_groups(self):
        """Slot names grouped as Keras creates them: Keras stores a group's slots variable by
        variable (interleaved), and the groups one after another."""
        return [self.slot_names()]

    def _keras_ordered_slots(self):
        out = []
        for group in self._slot_groups():
            idx = [self.slot_names().index(n) for n in group]
            for slots in self._slots:
                out.extend(slots[i] for i in idx)
        return out

    def _lr_is_variable(self):
        return not isinstance(self._learning_rate, schedules.LearningRateSchedule) and not callable(self._learning_rate)

    def save_own_variables(self, store):
        """As Keras's optimizers: the iteration count, the learning rate, then every slot."""
        store["0"] = np.asarray(self.iterations, np.int64)
        head = 1
        if self._lr_is_variable():
            store["1"] = np.asarray(self._learning_rate, np.float32)
            head = 2
        for i, s in enumerate(self._keras_ordered_slots()):
            store[str(head + i)] = s.numpy()

    def load_own_variables(self, store):
        """Reads what save_own_variables (or Keras) wrote; the optimizer must be built for the same
        variables. A file with no slot state (saved before any training step) restores the
        iteration count and learning rate only."""
        head = 2 if self._lr_is_variable() else 1
        slots = self._keras_ordered_slots()
        n = len(store.keys())
        if n not in (head, head + len(slots)):
            raise ValueError(f"{type(self).__name__} '{self.name}' has {head + len(slots)} variables (iteration"
                             f"{', learning rate' if head == 2 else ''} and {len(slots)} slots for "
                             f"{len(self._variables)} trained variables); the file has {n}. Was the file saved "
                             "for another model or another optimizer configuration?")
        values = [np.asarray(store[str(i)]) for i in range(n)]
        for s, v in zip(slots, values[head:]):
            if tuple(v.shape) != s.shape:
                raise ValueError(f"{type(self).__name__} slot '{s.name}': expected shape {s.shape}, found "
                                 f"{tuple(v.shape)}")
        self.iterations = int(values[0])
        if head == 2:
            self._learning_rate = float(values[1])
        for s, v in zip(slots, values[head:]):
            s.assign(v.astype(np.float32))

    # -- applying --
    def apply_gradients(self, grads_and_vars):
        pairs = [(g, v) for g, v in grads_and_vars]
        return self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads, trainable_variables=None):
        """One update of each variable with its gradient (None gradients are skipped).

        As Keras 3: the gradients are clipped (clipnorm, else global_clipnorm, else clipvalue),
        weight decay (var -= var * weight_decay * lr) is applied, then `update_step`, then each
        variable's `constraint` (from `kernel_constraint=` and friends). A sparse
        gradient (IndexedSlices, from an embedding lookup) first has its duplicate rows summed
        in C++, is clipped on those summed rows, and goes to `update_step_sparse`: the result
        equals the dense update with the densified gradient."""
        if trainable_variables is None:
            trainable_variables = self._variables
        pairs = [(g, v) for g, v in zip(grads, trainable_variables) if g is not None]
        if not pairs:
            if len(grads) and all(g is None for g in grads):
                raise ValueError("No gradients provided for any variable: the loss does not depend on the "
                                 f"variables {[v.path for v in trainable_variables]}")
            return
        missing = [v for _, v in pairs if id(v) not in self._index]
        if missing:
            self.build(missing)
        checked = []
        for g, v in pairs:
            if g.shape != v.shape:
                raise ValueError(f"{type(self).__name__}: gradient of shape {g.shape} for variable '{v.path}' of "
                                 f"shape {v.shape}")
            if g.device is not v.device:
                g = g.to(v.device)
            if _sparse.is_indexed_slices(g):
                g = _sparse.deduplicate(g)
            checked.append(g)
        grads = self._clip(checked)
        lr = self.learning_rate
        self.iterations += 1
        for g, v in zip(grads, (v for _, v in pairs)):
            if self.weight_decay and not self._fused_weight_decay:
                v.device.kernels.weight_decay(v._buf, float(self.weight_decay), lr)
            if _sparse.is_indexed_slices(g):
                self.update_step_sparse(g, v, lr)
            else:
                self.update_step(g, v, lr)
        with no_grad():
            for _, v in pairs:
                if v.constraint is not None:
                    v.assign(v.constraint(v))

    # Optimizers whose kernel applies weight decay itself (Adam) set this.
    _fused_weight_decay = False

    def _clip(self, grads):
        # Keras 3's order of precedence: clipnorm, else global_clipnorm, else clipvalue.
        if self.clipnorm is not None:
            return [self._scale(g, self.clipnorm / n) if n > self.clipnorm else g
                    for g, n in ((g, float(np.sqrt(self._sum_squares(g)))) for g in grads)]
        if self.global_clipnorm is not None:
            total = float(np.sqrt(sum(self._sum_squares(g) for g in grads)))
            if total > self.global_clipnorm:
                grads = [self._scale(g, self.global_clipnorm / total) for g in grads]
            return grads
        if self.clipvalue is not None:
            c = self.clipvalue
            return [_sparse.with_values(g, _m.clip(g.values, -c, c)) if _sparse.is_indexed_slices(g)
                    else _m.clip(g, -c, c) for g in grads]
        return grads

    @staticmethod
    def _sum_squares(g):
        t = g.values if _sparse.is_indexed_slices(g) else g   # distinct rows: the dense norm
        return t.device.kernels.sum_squares(t._buf)

    @staticmethod
    def _scale(g, factor):
        if _sparse.is_indexed_slices(g):
            return _sparse.with_values(g, _m.multiply(g.values, factor))
        return _m.multiply(g, factor)

    def update_step_sparse(self, gradient, variable, learning_rate):
        """The update with a row gradient (IndexedSlices with distinct sorted int64 indices).
        The built-in optimizers override it with a C++ row kernel; this default densifies."""
        self.update_step(gradient.to_dense(), variable, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError

    # -- config --
    def get_config(self):
        lr = self._learning_rate
        return {"name": self.name, "learning_rate": schedules.serialize(lr) if isinstance(
                    lr, schedules.LearningRateSchedule) else lr,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue, "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                "loss_scale_factor": None, "gradient_accumulation_steps": None}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

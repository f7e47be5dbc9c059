"""The optimizer base class: slots built per variable, gradient clipping, a learning rate or
schedule, and `update_step(grad, var, lr)` implemented by each optimizer with one fused kernel.

As Keras 3's BaseOptimizer, it also unscales gradients (`loss_scale_factor`), accumulates them
over `gradient_accumulation_steps` calls, and keeps an exponential moving average of the
weights (`use_ema`), with Keras's variables and their order, so saved state moves both ways."""
import re
import warnings

import numpy as np

from ..backend import optim as _optim
from ..backend import math as _m
from ..backend import sparse as _sparse
from ..backend.autodiff import no_grad
from ..backend.device import device as device_scope
from ..backend.tensor import Variable
from . import schedules

_f32 = np.float32


class _ReadsAsVariable:
    """A number (an int or float subclass) that also reads as a Keras variable: `.numpy()`,
    `.value`, `.dtype`, `.shape`; `assign` is the subclass's. Pickled or copied, a plain number."""

    shape = ()

    def __new__(cls, value, optimizer):
        self = cls._number.__new__(cls, value)
        self._optimizer = optimizer
        return self

    @property
    def value(self):
        return self._number(self)

    def numpy(self):
        return np.asarray(self._number(self), self.dtype)

    def __reduce__(self):
        return self._number, (self._number(self),)


class _IterationCount(_ReadsAsVariable, int):
    """What `optimizer.iterations` returns: the count, an int that reads as Keras's `iterations`
    variable; `.assign(n)` / `.assign_add(n)` set the optimizer's count."""

    _number, dtype = int, "int64"

    def assign(self, value):
        self._optimizer.iterations = int(np.asarray(value))
        return self._optimizer.iterations

    def assign_add(self, value):
        return self.assign(int(self) + int(np.asarray(value)))


class _LearningRate(_ReadsAsVariable, float):
    """What `optimizer.learning_rate` returns: the current rate, a float that reads as Keras's
    `learning_rate` variable (float32); `.assign(rate)` sets the optimizer's rate (refused while a
    schedule drives it, as in Keras, where the rate is then computed, not a variable)."""

    _number, dtype = float, "float32"

    def assign(self, value):
        opt = self._optimizer
        if callable(opt._learning_rate):
            raise TypeError(f"{type(opt).__name__}: the learning rate comes from {opt._learning_rate!r}, a schedule or "
                            "callable, so it cannot be assigned; set `optimizer.learning_rate = value` to replace it "
                            "with a fixed rate")
        opt.learning_rate = float(np.asarray(value))
        return opt.learning_rate


class Optimizer:
    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        cls = type(self).__name__
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored (as in Keras 3); use a "
                          "learning-rate schedule instead.", stacklevel=2)
        if kwargs:
            raise TypeError(f"{cls}: unrecognized keyword argument(s) {sorted(kwargs)}")
        if gradient_accumulation_steps and not (isinstance(gradient_accumulation_steps, (int, np.integer))
                                                and gradient_accumulation_steps >= 2):
            raise ValueError(f"{cls}: gradient_accumulation_steps must be an integer >= 2 (or None), received "
                             f"{gradient_accumulation_steps!r}")
        if use_ema:
            if not 0 <= ema_momentum <= 1:
                raise ValueError(f"{cls}: ema_momentum must be in [0, 1], received {ema_momentum}")
            if ema_overwrite_frequency and (not isinstance(ema_overwrite_frequency, (int, np.integer))
                                            or ema_overwrite_frequency < 1):
                raise ValueError(f"{cls}: ema_overwrite_frequency must be an integer >= 1 or None, received "
                                 f"{ema_overwrite_frequency!r}")
        if loss_scale_factor is not None and not loss_scale_factor > 0:
            raise ValueError(f"{cls}: loss_scale_factor must be a positive number or None, received "
                             f"{loss_scale_factor!r}")
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError(f"{cls}: only one of clipnorm and global_clipnorm can be set, "
                             f"received clipnorm={clipnorm}, global_clipnorm={global_clipnorm}")
        for n, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if v is not None and v <= 0:
                raise ValueError(f"{cls}: {n} must be positive, received {v}")
        self.name = name or cls.lower()
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.use_ema, self.ema_momentum = bool(use_ema), ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps or None
        if isinstance(learning_rate, dict):
            learning_rate = schedules.deserialize(learning_rate)
        if not isinstance(learning_rate, schedules.LearningRateSchedule) and not callable(learning_rate):
            learning_rate = float(learning_rate)
            if learning_rate < 0:
                raise ValueError(f"{cls}: learning_rate must be >= 0, received {learning_rate}")
        self._learning_rate = learning_rate
        self._iterations = 0     # calls of apply (Keras's `iteration` variable)
        self.built = False
        self._variables = []     # the trained variables, in build order
        self._index = {}         # id(variable) -> position
        self._slots = []         # one list of slot Variables per trained variable
        self._averages = []      # use_ema: the moving average of each trained variable
        self._accumulators = []  # gradient_accumulation_steps: the gradient sum of each
        self._exclude_ids, self._exclude_pattern = set(), None

    # -- iterations --
    @property
    def iterations(self):
        """Update steps taken: calls of apply, or with gradient accumulation the completed
        accumulations (as Keras: `iteration // gradient_accumulation_steps`)."""
        if self.gradient_accumulation_steps:
            return _IterationCount(self._iterations // self.gradient_accumulation_steps, self)
        return _IterationCount(self._iterations, self)

    @iterations.setter
    def iterations(self, value):
        value = int(value)
        if self.gradient_accumulation_steps:  # keeps the position inside the current accumulation
            steps = self.gradient_accumulation_steps
            value = value * steps + self._iterations % steps
        self._iterations = value
        self._iterations_changed()

    def _iterations_changed(self):
        """Called when the iteration count is set from outside (a loaded or broadcast state)."""

    # -- learning rate --
    @property
    def learning_rate(self):
        """The current rate: a float that also has Keras's variable methods (`_LearningRate`)."""
        return _LearningRate(self._current_learning_rate(), self)

    def _current_learning_rate(self):
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            return float(lr(self._iterations))   # Keras: schedules see every call of apply
        if callable(lr):
            return float(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, schedules.LearningRateSchedule) or (callable(value) and not isinstance(value, float)):
            self._learning_rate = value
            return
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
                if self.use_ema:
                    self._averages.append(self._reference_slot(v, "average"))
                if self.gradient_accumulation_steps:
                    self._accumulators.append(self._reference_slot(v, "gradient_accumulator"))
                self._slots.append([self._make_slot(v, n) for n in self.slot_names()])
        self.built = True

    @staticmethod
    def _reference_slot(var, slot_name, value=0.0):
        """A slot of the variable's shape named as Keras's add_variable_from_reference names it."""
        return Variable(_m.full(var.shape, float(value)), trainable=False,
                        name=f"{var.path.replace('/', '_')}_{slot_name}")

    def _make_slot(self, var, slot_name):
        return self._reference_slot(var, slot_name)

    def slots_of(self, var):
        return self._slots[self._index[id(var)]]

    @property
    def variables(self):
        """The optimizer's state Variables in Keras's order, less the iteration count and the
        learning rate (plain numbers here): moving averages, gradient accumulators, then the slots."""
        return self._keras_ordered_slots()

    # -- saved state: Keras's layout, [iteration, learning_rate (unless a schedule), slots...] --
    def _slot_groups(self):
        """Slot names grouped as Keras creates them: Keras stores a group's slots variable by
        variable (interleaved), and the groups one after another."""
        return [self.slot_names()]

    def _extra_variables(self):
        """State Variables not tied to one trained variable, after the slots (Nadam's u_product)."""
        return []

    def _keras_ordered_slots(self):
        out = list(self._averages) + list(self._accumulators)
        for group in self._slot_groups():
            idx = [self.slot_names().index(n) for n in group]
            for slots in self._slots:
                out.extend(slots[i] for i in idx)
        return out + list(self._extra_variables())

    def _lr_is_variable(self):
        return not isinstance(self._learning_rate, schedules.LearningRateSchedule) and not callable(self._learning_rate)

    def save_own_variables(self, store):
        """As Keras's optimizers: the iteration count, the learning rate, then every slot."""
        store["0"] = np.asarray(self._iterations, np.int64)
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
            extra = [w for w, on in (("moving averages (use_ema)", self.use_ema),
                                     ("gradient accumulators", self.gradient_accumulation_steps)) if on]
            raise ValueError(f"{type(self).__name__} '{self.name}' has {head + len(slots)} variables (iteration"
                             f"{', learning rate' if head == 2 else ''} and {len(slots)} slots"
                             f"{' incl. ' + ' and '.join(extra) if extra else ''} for {len(self._variables)} "
                             f"trained variables); the file has {n}. Was the file saved for another model or "
                             "another optimizer configuration?")
        values = [np.asarray(store[str(i)]) for i in range(n)]
        for s, v in zip(slots, values[head:]):
            if tuple(v.shape) != s.shape:
                raise ValueError(f"{type(self).__name__} slot '{s.name}': expected shape {s.shape}, found "
                                 f"{tuple(v.shape)}")
        self._iterations = int(values[0])
        if head == 2:
            self._learning_rate = float(values[1])
        for s, v in zip(slots, values[head:]):
            s.assign(v.astype(s.dtype))
        self._iterations_changed()

    # -- weight decay --
    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Variables (or variables whose name contains one of `var_names`) that weight decay skips;
        call it before the optimizer is built, as Keras."""
        if self.built:
            raise ValueError("exclude_from_weight_decay() can only be configured before the optimizer is built.")
        self._exclude_ids = {id(v) for v in var_list or ()}
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, variable):
        if id(variable) in self._exclude_ids:
            return False
        return self._exclude_pattern is None or self._exclude_pattern.search(variable.name) is None

    def _decay(self, variable):
        """weight_decay for this variable (0.0 when unset or excluded)."""
        return float(self.weight_decay) if self.weight_decay and self._use_weight_decay(variable) else 0.0

    # -- applying --
    def apply_gradients(self, grads_and_vars):
        pairs = [(g, v) for g, v in grads_and_vars]
        return self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def scale_loss(self, loss):
        """The loss times loss_scale_factor (unchanged without one): training steps compute the
        gradients of the scaled loss, and apply divides them by the factor again."""
        if self.loss_scale_factor is not None:
            self._loss_scaled = True
            return _m.multiply(loss, float(self.loss_scale_factor))
        return loss

    _loss_scaled = False       # scale_loss has been called (apply warns once otherwise)
    _warned_unscaled = False

    def apply(self, grads, trainable_variables=None):
        """One call of the optimizer with a gradient per variable (None gradients are skipped).

        As Keras 3: the gradients are divided by loss_scale_factor; with
        gradient_accumulation_steps=N they are added to the accumulators, and every Nth call
        the mean (accumulated + current) / N is applied; an update clips the gradients (clipnorm,
        else global_clipnorm, else clipvalue), applies weight decay (var -= var * weight_decay *
        lr), then `update_step`; then the moving averages of the weights are updated (use_ema),
        and each variable's `constraint` (from `kernel_constraint=` and friends) is applied. A
        sparse gradient (IndexedSlices, from an embedding lookup) first has its duplicate rows
        summed in C++, is clipped on those summed rows, and goes to `update_step_sparse`: the
        result equals the dense update with the densified gradient (on a GPU it is densified
        instead where that costs no more, see _prepare_sparse)."""
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
                g = self._prepare_sparse(g)
            checked.append(g)
        variables = [v for _, v in pairs]
        if self.loss_scale_factor is not None:
            if not self._loss_scaled and not self._warned_unscaled:
                self._warned_unscaled = True
                warnings.warn(f"{type(self).__name__}: loss_scale_factor={self.loss_scale_factor} divides the "
                              "gradients by the factor, but scale_loss() has never been called: take the gradients of "
                              "optimizer.scale_loss(loss), or the updates are that much too small.", stacklevel=2)
            checked = [self._unscale(g) for g in checked]
        lr = self._current_learning_rate()
        steps = self.gradient_accumulation_steps
        if steps:
            accs = [self._accumulators[self._index[id(v)]] for v in variables]
            for g, acc in zip(checked, accs):
                self._accumulate(acc, g)
            if (self._iterations + 1) % steps == 0:
                mean = [_m.divide(acc, float(steps)) for acc in accs]   # Keras: (g + accumulated) / steps
                self._update(mean, variables, lr)
                for acc in self._accumulators:
                    _optim.fill(acc, 0.0)
        else:
            self._update(checked, variables, lr)
        if self.use_ema:
            self._update_moving_averages()
        with no_grad():
            for v in variables:
                if v.constraint is not None:
                    v.assign(v.constraint(v))
        self._iterations += 1

    # On a GPU, summing a sparse gradient's duplicate rows needs the host to read how many rows are
    # left (a wait for the device, and the row kernels wait again to check the rows they are given).
    # There the gradient is densified instead (a scatter-add, no wait) and takes the dense kernel --
    # the same update, up to the order of the sums of repeated rows -- wherever the update walks
    # every row of the variable anyway (moments that decay), or the variable has at most this many
    # elements.
    _DENSIFY_ON_GPU_MAX = 1 << 24

    def _sparse_rows_only(self):
        """Whether the sparse update touches only the gradient's rows (SGD without momentum, Adagrad):
        a zero gradient row leaves that row and its state unchanged."""
        return False

    def _prepare_sparse(self, g):
        small = int(np.prod(g.shape)) <= self._DENSIFY_ON_GPU_MAX
        if g.device.kind == "gpu" and (small or not self._sparse_rows_only()):
            return _sparse.densify(g)
        return _sparse.deduplicate(g)

    def _update(self, grads, variables, lr):
        grads = self._clip(grads)
        if self.weight_decay and not self._fused_weight_decay:
            for v in variables:
                wd = self._decay(v)
                if wd:
                    _optim.weight_decay(v, wd, lr)
        self._backend_update_step(grads, variables, lr)

    def _backend_update_step(self, grads, variables, lr):
        """update_step (or update_step_sparse) for each pair; an optimizer with per-step state
        (Nadam) advances it here first, as Keras. Where the optimizer has a fused update over
        several variables (_multi_args), the float32 variables with dense gradients on one device
        go to it in one call (on a GPU one launch for many variables), each updated as
        update_step alone would."""
        if len(variables) > 1 and self._multi_args([], lr) is not None:  # (its arguments for no variable)
            groups, rest = {}, []
            for g, v in zip(grads, variables):
                if v.dtype == "float32" and g.dtype == "float32" and not _sparse.is_indexed_slices(g):
                    groups.setdefault(v.device, []).append((g, v))
                else:
                    rest.append((g, v))
            for pairs in groups.values():
                if len(pairs) == 1:
                    rest += pairs
                    continue
                vs = [v for _, v in pairs]
                _optim.update_many(self._multi_kernel, vs, [g for g, _ in pairs], *self._multi_args(vs, lr))
            grads, variables = [g for g, _ in rest], [v for _, v in rest]
        for g, v in zip(grads, variables):
            if _sparse.is_indexed_slices(g):
                self.update_step_sparse(g, v, lr)
            else:
                self.update_step(g, v, lr)

    _multi_kernel = None  # the fused update over several variables (adam_multi), if any

    def _multi_args(self, variables, lr):
        """The arguments of _multi_kernel after the variables and gradients (lists: one entry per
        variable), or None where it does not apply (none, or a subclass with its own update_step)."""
        return None

    @staticmethod
    def _accumulate(acc, g):
        if _sparse.is_indexed_slices(g):   # rows added in place, never densified
            _optim.add_rows(acc, g)
        else:
            acc.assign_add(g)

    def _unscale(self, g):
        s = float(self.loss_scale_factor)
        if _sparse.is_indexed_slices(g):
            return _sparse.with_values(g, _m.divide(g.values, s))
        return _m.divide(g, s)

    # Optimizers whose kernel applies weight decay itself (Adam) set this.
    _fused_weight_decay = False

    def _clip(self, grads):
        # Keras 3's order of precedence: clipnorm, else global_clipnorm, else clipvalue; and its
        # formulas, computed on the device (no host read per step): each gradient times
        # clipnorm / max(norm, clipnorm); all of them times clip * min(1 / global_norm, 1 / clip)
        # (NaN when the norm is NaN).
        if self.clipnorm is not None:
            c = float(self.clipnorm)
            return [self._scale(g, _m.divide(c, _m.maximum(_m.sqrt(self._sum_squares(g)), c))) for g in grads]
        if self.global_clipnorm is not None:
            c = float(self.global_clipnorm)
            total = self._sum_squares(grads[0])
            for g in grads[1:]:
                t = self._sum_squares(g)
                total = _m.add(total, t if t.device is total.device else t.to(total.device))
            norm = _m.sqrt(total)
            scale = _m.add(_m.multiply(c, _m.minimum(_m.divide(1.0, norm), 1.0 / c)), _m.subtract(norm, norm))
            return [self._scale(g, scale if scale.device is g.device else scale.to(g.device)) for g in grads]
        if self.clipvalue is not None:
            c = self.clipvalue
            return [_sparse.with_values(g, _m.clip(g.values, -c, c)) if _sparse.is_indexed_slices(g)
                    else _m.clip(g, -c, c) for g in grads]
        return grads

    @staticmethod
    def _sum_squares(g):
        """The squared norm of a gradient, a scalar tensor on its device (an IndexedSlices' rows
        are distinct after deduplication: their norm is the dense gradient's)."""
        t = g.values if _sparse.is_indexed_slices(g) else g
        return _m.sum(_m.square(t))

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

    # -- moving average of the weights (use_ema) --
    def _update_moving_averages(self):
        # Keras: average = m * average + (1 - m) * var with m = 0 on the first update step (the
        # average starts at the weights), in float32; every trained variable, every call.
        m = _f32(self.ema_momentum) if self.iterations != 0 else _f32(0.0)
        a, b = float(_f32(1.0) - m), float(m)
        for v, avg in zip(self._variables, self._averages):
            _optim.axpby(a, v, b, avg)
        freq = self.ema_overwrite_frequency
        if freq and (self.iterations + 1) % freq == 0:
            for v, avg in zip(self._variables, self._averages):
                _optim.copy_into(avg, v)

    def finalize_variable_values(self, var_list):
        """With use_ema, writes the moving averages into the variables (Keras's fit calls it after
        the last epoch; call it yourself at the end of a custom training loop)."""
        if not self.use_ema:
            return
        unknown = [v.path for v in var_list if id(v) not in self._index]
        if unknown:
            raise ValueError(f"{type(self).__name__} '{self.name}' holds no moving average for {unknown}: it was "
                             "built for other variables (or has not been applied yet)")
        for v in var_list:
            avg = self._averages[self._index[id(v)]]
            _optim.copy_into(avg, v)

    # -- config --
    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = schedules.serialize(lr)
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue, "use_ema": self.use_ema,
                "ema_momentum": self.ema_momentum, "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

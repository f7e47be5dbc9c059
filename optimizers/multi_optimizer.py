"""MultiOptimizer: different optimizers for different variables, chosen by an OptimizerMap (variable
path patterns) or by a function of the variable."""
import re
from collections.abc import MutableMapping

from .loss_scale_optimizer import LossScaleOptimizer, OffsetStore, check_inner
from .optimizer import Optimizer


def _check_member(optimizer, who):
    check_inner(optimizer, who)
    if isinstance(optimizer, LossScaleOptimizer):
        raise ValueError(f"{who}: a LossScaleOptimizer cannot be used inside a MultiOptimizer; wrap the "
                         "MultiOptimizer in it instead")
    if isinstance(optimizer, MultiOptimizer):
        raise ValueError(f"{who}: a MultiOptimizer cannot be used inside a MultiOptimizer")


class OptimizerMap(MutableMapping):
    """Variable paths (or regular expressions that must match a whole path) to optimizers, with a
    default for the paths no key matches, as Keras's:

        opt_map = OptimizerMap(default_optimizer=lamina.optimizers.Adam())
        opt_map["encoder/.*"] = lamina.optimizers.SGD()
        opt_map(variable)   # the optimizer of variable.path

    An exact key wins; otherwise a path matched by two patterns is an error."""

    def __init__(self, default_optimizer, optimizer_map=None):
        if not isinstance(default_optimizer, Optimizer):
            raise TypeError(f"OptimizerMap: default_optimizer must be a lamina Optimizer instance, received "
                            f"{type(default_optimizer).__name__} {default_optimizer!r}")
        if optimizer_map is not None and not isinstance(optimizer_map, dict):
            raise TypeError(f"OptimizerMap: optimizer_map must be a dict {{path pattern: optimizer}}, received "
                            f"{type(optimizer_map).__name__}")
        self._default_optimizer = default_optimizer
        self._optimizer_map = {}
        for key, opt in (optimizer_map or {}).items():
            self[key] = opt

    @property
    def default_optimizer(self):
        return self._default_optimizer

    def __getitem__(self, key):
        if key in self._optimizer_map:
            return self._optimizer_map[key]
        matching = [p for p in self._optimizer_map if re.fullmatch(p, key)]
        if len(matching) > 1:
            raise ValueError(f"Multiple optimizers assigned to variable {key}: the patterns {matching} all match it. "
                             "Make the patterns exclusive, or add the exact path as a key.")
        return self._optimizer_map[matching[0]] if matching else self._default_optimizer

    def __setitem__(self, key, optimizer):
        if not isinstance(key, str):
            raise ValueError(f"OptimizerMap: keys must be strings (variable paths or patterns), received {key!r}")
        if key in self._optimizer_map:
            raise ValueError(f"'{key}' already exists in the OptimizerMap with value {self._optimizer_map[key]}. "
                             "Please make sure to not use duplicated keys.")
        try:
            re.compile(key)
        except re.error as e:
            raise ValueError(f"OptimizerMap: key {key!r} is not a valid regular expression ({e})") from None
        _check_member(optimizer, f"OptimizerMap['{key}']")
        self._optimizer_map[key] = optimizer

    def __delitem__(self, key):
        del self._optimizer_map[key]

    def __len__(self):
        return len(self._optimizer_map)

    def __iter__(self):
        return iter(self._optimizer_map)

    def __call__(self, variable):
        return self[variable.path]

    def get_config(self):
        from ..saving import serialize_keras_object
        return {"default_optimizer": serialize_keras_object(self._default_optimizer),
                "optimizer_map": serialize_keras_object(self._optimizer_map)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving import deserialize_keras_object
        return cls(deserialize_keras_object(config["default_optimizer"], custom_objects=custom_objects),
                   deserialize_keras_object(config["optimizer_map"], custom_objects=custom_objects))


class MultiOptimizer(Optimizer):
    """As Keras's `MultiOptimizer`: each variable is trained by the optimizer `optimizer_map`
    gives it (an `OptimizerMap`, or a function of the variable returning an optimizer).
    `optimizers` lists the inner optimizers; `learning_rate` is theirs, so reading or setting it
    here raises. `loss_scale_factor`, when set, is passed on to every inner optimizer."""

    def __init__(self, optimizer_map, loss_scale_factor=None, name=None):
        if not callable(optimizer_map):
            raise TypeError("MultiOptimizer: optimizer_map must be an OptimizerMap or a function of a variable that "
                            f"returns an optimizer, received {type(optimizer_map).__name__}")
        self._inner_optimizers = []
        super().__init__(learning_rate=0.0, loss_scale_factor=loss_scale_factor, name=name or "multi_optimizer")
        self._optimizer_map = optimizer_map
        if isinstance(optimizer_map, OptimizerMap):
            for opt in list(optimizer_map.values()) + [optimizer_map.default_optimizer]:
                self._add_inner(opt)
        self._owner = {}   # id(variable) -> index of its optimizer

    def _add_inner(self, opt):
        if not any(opt is o for o in self._inner_optimizers):
            opt.loss_scale_factor = self.loss_scale_factor
            self._inner_optimizers.append(opt)
        return next(i for i, o in enumerate(self._inner_optimizers) if o is opt)

    @property
    def optimizers(self):
        return self._inner_optimizers

    @property
    def loss_scale_factor(self):
        return getattr(self, "_loss_scale_factor", None)

    @loss_scale_factor.setter
    def loss_scale_factor(self, value):
        self._loss_scale_factor = value
        for opt in getattr(self, "_inner_optimizers", ()):
            opt.loss_scale_factor = value

    @property
    def learning_rate(self):
        raise AttributeError("Learning rate cannot be accessed on a MultiOptimizer. Access the learning rate on the "
                             "individual sub-optimizers instead (`optimizer.optimizers`).")

    @learning_rate.setter
    def learning_rate(self, value):
        raise AttributeError("Learning rate cannot be set on a MultiOptimizer. Set the learning rate on the "
                             "individual sub-optimizers instead (`optimizer.optimizers`).")

    def build(self, variables):
        if self.built:
            return
        groups = {}
        for v in variables:
            opt = self._optimizer_map(v)
            _check_member(opt, f"MultiOptimizer: the optimizer for variable '{v.path}'")
            i = self._add_inner(opt)
            self._owner[id(v)] = i
            groups.setdefault(i, []).append(v)
        for i, vs in groups.items():
            self._inner_optimizers[i].build(vs)
        super().build(variables)

    @property
    def variables(self):
        return [v for opt in self._inner_optimizers for v in opt.variables]

    def scale_loss(self, loss):
        out = super().scale_loss(loss)
        for opt in self._inner_optimizers:   # they divide the gradients by the factor again
            opt._loss_scaled = self._loss_scaled
        return out

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError("MultiOptimizer: when passing gradients without variables, the optimizer must already "
                                 "be built on a list of variables. Call `optimizer.build(trainable_variables)` first.")
            trainable_variables = self._variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            self.build(trainable_variables)
        if len(grads) != len(trainable_variables):
            raise ValueError(f"MultiOptimizer: {len(grads)} gradients for {len(trainable_variables)} variables; they "
                             "must match one to one")
        unknown = [v.path for v in trainable_variables if id(v) not in self._owner]
        if unknown:
            raise ValueError(f"MultiOptimizer '{self.name}' was built for other variables; it has no optimizer for "
                             f"{unknown}")
        pairs = [[] for _ in self._inner_optimizers]
        for g, v in zip(grads, trainable_variables):
            pairs[self._owner[id(v)]].append((g, v))
        for opt, gv in zip(self._inner_optimizers, pairs):
            if gv:
                opt.apply([g for g, _ in gv], [v for _, v in gv])
        self._iterations += 1

    def finalize_variable_values(self, var_list):
        groups = {}
        for v in var_list:
            groups.setdefault(self._owner[id(v)], []).append(v)
        for i, vs in groups.items():
            self._inner_optimizers[i].finalize_variable_values(vs)

    # Keras's saved layout: its iteration and learning rate (0), then each inner optimizer's
    def save_own_variables(self, store):
        import numpy as np
        store["0"] = np.asarray(self._iterations, np.int64)
        store["1"] = np.asarray(0.0, np.float32)
        offset = 2
        for opt in self._inner_optimizers:
            state = {}   # its variables, and their count: where the next optimizer's start
            opt.save_own_variables(state)
            for i in range(len(state)):
                store[str(offset + i)] = state[str(i)]
            offset += len(state)

    def load_own_variables(self, store):
        """Reads what save_own_variables (or Keras) wrote, all or nothing. A built optimizer also
        takes a file saved before it was built (iterations and learning rates only), as a plain
        optimizer takes a file without slots."""
        import numpy as np
        before = []   # each inner optimizer's state: its count, and what is put back if a later one fails
        for opt in self._inner_optimizers:
            state = {}
            opt.save_own_variables(state)
            before.append(state)
        counts = [len(state) for state in before]
        n = len(store.keys())
        heads = [2 if opt._lr_is_variable() else 1 for opt in self._inner_optimizers]
        if self.built and n != 2 + sum(counts) and n == 2 + sum(heads):
            counts = heads   # saved before it was built: each optimizer's iteration and learning rate
        if n != 2 + sum(counts):
            raise ValueError(f"MultiOptimizer '{self.name}' has {2 + sum(counts)} variables (its iteration and "
                             f"learning rate, then {counts} for its optimizers "
                             f"{[o.name for o in self._inner_optimizers]}); the file has {n}")
        iterations = int(np.asarray(store["0"]))
        offset, loaded = 2, []
        try:
            for opt, count, state in zip(self._inner_optimizers, counts, before):
                opt.load_own_variables(OffsetStore(store, offset, count))
                loaded.append((opt, state))
                offset += count
        except (ValueError, KeyError):
            for opt, state in loaded:   # all or nothing
                opt.load_own_variables(state)
            raise
        self._iterations = iterations

    def get_config(self):
        from ..saving import serialize_keras_object
        return {"optimizer_map": serialize_keras_object(self._optimizer_map),
                "loss_scale_factor": self.loss_scale_factor, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving import deserialize_keras_object
        config = dict(config)
        config["optimizer_map"] = deserialize_keras_object(config["optimizer_map"], custom_objects=custom_objects)
        return cls(**config)

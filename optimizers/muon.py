"""Muon: momentum orthogonalized by Newton-Schulz iterations for 2-D weights, AdamW for the rest."""
import re

import numpy as np

from ..backend import optim as _optim
from ..backend import linalg as _la
from ..backend import manipulation as _mp
from ..backend import math as _m
from ..backend.autodiff import no_grad
from .optimizer import Optimizer

_f32 = np.float32


class Muon(Optimizer):
    """As Keras's `Muon`. A 2-D variable whose path matches no `exclude_layers` pattern (and, with
    `exclude_embeddings`, does not contain "embedding") takes the Muon step:

        m = momentum * m + g;   u = g + momentum * m (nesterov) or m
        var -= lr * NewtonSchulz5(u) [* sqrt(max(rows, cols)) * rms_rate]

    every other variable the Adam step with `adam_beta_1`, `adam_beta_2`, `epsilon` at
    `learning_rate * adam_lr_ratio` (lamina's fused Adam kernel). Weight decay is decoupled:
    `weight_decay` for Muon variables, `adam_weight_decay` for Adam ones, times the learning rate.
    Slots: a momentum per variable, and a velocity per Adam variable (Keras's order)."""

    def __init__(self, learning_rate=0.001, adam_beta_1=0.9, adam_beta_2=0.999, adam_weight_decay=0.004,
                 epsilon=1e-7, weight_decay=0.004, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, exclude_layers=None, exclude_embeddings=True,
                 muon_a=3.4445, muon_b=-4.7750, muon_c=2.0315, adam_lr_ratio=1, momentum=0.95, ns_steps=5,
                 nesterov=True, rms_rate=0.2, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor, gradient_accumulation_steps=gradient_accumulation_steps,
                         name=name, **kwargs)
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, (int, np.integer)) or ns_steps < 0:
            raise ValueError(f"Muon: ns_steps must be an int >= 0 (Newton-Schulz iterations), received {ns_steps!r}")
        if exclude_layers is not None and (isinstance(exclude_layers, str) or
                                           not all(isinstance(p, str) for p in exclude_layers)):
            raise ValueError("Muon: exclude_layers must be a list of regular expressions matched against variable "
                             f"paths, e.g. ['output_dense'], received {exclude_layers!r}")
        for n, v in (("adam_weight_decay", adam_weight_decay), ("rms_rate", rms_rate)):
            if v is not None and v < 0:
                raise ValueError(f"Muon: {n} must be >= 0 or None, received {v}")
        self.adam_beta_1, self.adam_beta_2, self.epsilon = adam_beta_1, adam_beta_2, epsilon
        self.muon_a, self.muon_b, self.muon_c = muon_a, muon_b, muon_c
        self.adam_lr_ratio, self.momentum, self.ns_steps, self.nesterov = adam_lr_ratio, momentum, int(ns_steps), nesterov
        self.exclude_embeddings = exclude_embeddings
        self.exclude_layers = list(exclude_layers or [])
        self.adam_weight_decay, self.rms_rate = adam_weight_decay, rms_rate

    def _should_use_adamw(self, variable):
        """Keras's rule: not 2-D, an embedding (with exclude_embeddings), or a path matching
        one of exclude_layers."""
        if len(variable.shape) != 2:
            return True
        if self.exclude_embeddings and "embedding" in variable.path.lower():
            return True
        return any(re.search(p, variable.path) for p in self.exclude_layers)

    # -- slots: a momentum for every variable, a velocity for the Adam ones --
    def slot_names(self):
        return ["momentum", "velocity"]

    def _make_slot(self, var, slot_name):
        if slot_name == "velocity" and not self._should_use_adamw(var):
            return None
        return super()._make_slot(var, slot_name)

    def _keras_ordered_slots(self):
        return [s for s in super()._keras_ordered_slots() if s is not None]

    # -- the update --
    _fused_weight_decay = True   # decayed in update_step, by the rate of the variable's kind

    def _decay_rate(self, variable):
        if not self._use_weight_decay(variable):
            return None
        return self.adam_weight_decay if self._should_use_adamw(variable) else self.weight_decay

    def update_step(self, gradient, variable, learning_rate):
        wd = self._decay_rate(variable)
        if wd:
            _optim.weight_decay(variable, wd, learning_rate)
        m, v = self.slots_of(variable)
        if v is not None:
            self._adamw_step(gradient, variable, learning_rate * self.adam_lr_ratio, m, v)
        else:
            self._muon_step(gradient, variable, learning_rate, m)

    def _adamw_step(self, gradient, variable, learning_rate, m, v):
        t = _f32(self.iterations + 1)
        b1, b2 = _f32(self.adam_beta_1), _f32(self.adam_beta_2)
        alpha = _f32(learning_rate) * np.sqrt(_f32(1) - b2 ** t) / (_f32(1) - b1 ** t)
        _optim.update("adam", variable, gradient, m, v, v, float(alpha), float(b1), float(b2), float(self.epsilon),
                      False, 0.0)

    def _muon_step(self, gradient, variable, learning_rate, m):
        mom = float(self.momentum)
        with no_grad():
            m.assign_add(_m.add(gradient, _m.multiply(m, mom - 1.0)))
            u = _m.add(gradient, _m.multiply(m, mom)) if self.nesterov else m
            update = _m.multiply(self.zeropower_via_newtonschulz5(u, self.ns_steps), float(learning_rate))
            variable.assign_sub(self.lr_adjust(update))

    @staticmethod
    def transpose_last_axis(x):
        return _mp.swapaxes(x, -1, -2)

    def lr_adjust(self, x):
        """Moonlight's scaling: x * sqrt(max(rows, cols)) * rms_rate (x unchanged when rms_rate is None)."""
        if self.rms_rate is None:
            return x
        return _m.multiply(_m.multiply(x, float(np.sqrt(_f32(max(x.shape[0], x.shape[1]))))), float(self.rms_rate))

    def zeropower_via_newtonschulz5(self, x, steps):
        """Keras's quintic Newton-Schulz iteration towards the orthogonal factor U V^T of x."""
        if x.ndim < 2:
            raise ValueError(f"Muon: Newton-Schulz needs a gradient of at least 2 dimensions, received shape {x.shape}")
        a, b, c = float(self.muon_a), float(self.muon_b), float(self.muon_c)
        tall = x.shape[-2] > x.shape[-1]
        if tall:
            x = self.transpose_last_axis(x)
        norm = _m.sqrt(_m.sum(_m.square(x), axis=(-2, -1), keepdims=True))
        x = _m.divide(x, _m.add(norm, 1e-7))
        for _ in range(steps):
            xxt = _la.matmul(x, self.transpose_last_axis(x))
            poly = _m.add(_m.multiply(xxt, b), _m.multiply(_la.matmul(xxt, xxt), c))
            x = _m.add(_m.multiply(x, a), _la.matmul(poly, x))
        return self.transpose_last_axis(x) if tall else x

    def get_config(self):
        return {**super().get_config(), "adam_beta_1": self.adam_beta_1, "adam_beta_2": self.adam_beta_2,
                "epsilon": self.epsilon, "exclude_layers": self.exclude_layers, "muon_a": self.muon_a,
                "muon_b": self.muon_b, "muon_c": self.muon_c, "adam_lr_ratio": self.adam_lr_ratio,
                "momentum": self.momentum, "ns_steps": self.ns_steps, "nesterov": self.nesterov,
                "exclude_embeddings": self.exclude_embeddings, "adam_weight_decay": self.adam_weight_decay,
                "rms_rate": self.rms_rate}

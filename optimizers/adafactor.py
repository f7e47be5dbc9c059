"""Adafactor: second moments factored into row and column statistics (Keras 3's rule)."""
import math

import numpy as np

from ..backend import optim as _optim
from ..backend.tensor import Variable
from .optimizer import Optimizer

_f32 = np.float32


class Adafactor(Optimizer):
    """For a variable of rank >= 2 (last two axes R, C): r, c are moving means of g^2 + epsilon_1
    over the last and the second-last axis, v = r / mean(r) (x) c; rank < 2 keeps v itself.
    beta_t = 1 - t^beta_2_decay; u = g / sqrt(v); var -= max(epsilon_2, rms(var)) min(lr, 1/sqrt(t))
    u / max(1, rms(u) / clip_threshold). Slots per variable, as Keras: r, c (int32 scalar
    placeholders below rank 2) and velocity."""

    def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0,
                 relative_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_2_decay, self.epsilon_1, self.epsilon_2 = beta_2_decay, epsilon_1, epsilon_2
        self.clip_threshold, self.relative_step = clip_threshold, relative_step

    def slot_names(self):
        return ["r", "c", "velocity"]

    def _make_slot(self, var, slot_name):
        if slot_name == "velocity":
            return self._reference_slot(var, slot_name)
        if len(var.shape) < 2:   # Keras's placeholders: int32 scalars named after the variable
            return Variable(np.zeros((), np.int32), trainable=False, name=var.name)
        shape = var.shape[:-1] if slot_name == "r" else var.shape[:-2] + var.shape[-1:]
        return Variable(np.zeros(shape, np.float32), trainable=False, name=var.name)

    def update_step(self, gradient, variable, learning_rate):
        r, c, v = self.slots_of(variable)
        t = _f32(self.iterations + 1)
        lr = _f32(learning_rate)
        inv_sqrt_t = _f32(1) / np.sqrt(t)
        # Keras first caps a float rate at 1/sqrt(t) when relative_step, then takes the same cap again
        rho_t = min(lr, inv_sqrt_t)
        beta = _f32(1) - t ** _f32(self.beta_2_decay)
        shape = variable.shape
        factored = len(shape) >= 2
        B, R, C = (math.prod(shape[:-2]), shape[-2], shape[-1]) if factored else (1, 1, max(1, variable.size))
        _optim.update("adafactor", variable, gradient, r if factored else None, c if factored else None,
                      v, B, R, C, factored, float(rho_t), float(beta), float(_f32(1) - beta), self.epsilon_1,
                      self.epsilon_2, self.clip_threshold)

    update_step_sparse = update_step   # the statistics span every row: the row kernel walks all rows

    def get_config(self):
        return {**super().get_config(), "beta_2_decay": self.beta_2_decay, "epsilon_1": self.epsilon_1,
                "epsilon_2": self.epsilon_2, "clip_threshold": self.clip_threshold,
                "relative_step": self.relative_step}

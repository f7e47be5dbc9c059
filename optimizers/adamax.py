"""Adamax: Adam with the infinity norm of past gradients in place of the second moment."""
import numpy as np

from ..backend import optim as _optim
from .optimizer import Optimizer

_f32 = np.float32


class Adamax(Optimizer):
    """m += (g - m)(1 - beta_1); u = max(beta_2 u, |g|); var -= lr m / ((1 - beta_1^t)(u + epsilon))."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def slot_names(self):
        return ["momentum", "norm"]

    def update_step(self, gradient, variable, learning_rate):
        m, u = self.slots_of(variable)
        one_m_b1p = _f32(1) - _f32(self.beta_1) ** _f32(self.iterations + 1)   # float32, as Keras
        _optim.update("adamax", variable, gradient, m, u, learning_rate, 1 - self.beta_1, self.beta_2,
                     self.epsilon, float(one_m_b1p))

    update_step_sparse = update_step   # m and u decay on every row: the row kernel walks all rows

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

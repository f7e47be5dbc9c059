"""Adadelta: per-coordinate steps from running averages of squared gradients and squared updates."""
import numpy as np

from ..backend import optim as _optim
from .optimizer import Optimizer


class Adadelta(Optimizer):
    """accumulated_grad = rho a + (1 - rho) g^2; delta = -sqrt(accumulated_delta_var + eps) g /
    sqrt(accumulated_grad + eps); accumulated_delta_var = rho d + (1 - rho) delta^2; var += lr delta."""

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho, self.epsilon = rho, epsilon

    def slot_names(self):
        return ["accumulated_grad", "accumulated_delta_var"]

    def update_step(self, gradient, variable, learning_rate):
        ag, ad = self.slots_of(variable)
        _optim.update("adadelta", variable, gradient, ag, ad, learning_rate, self.rho,
                     float(np.float32(1 - self.rho)), self.epsilon)

    update_step_sparse = update_step   # every row's averages decay: the row kernel walks all rows

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}

"""Lion (evolved sign momentum)."""
import numpy as np

from ..backend import optim as _optim
from .optimizer import Optimizer

_f32 = np.float32


class Lion(Optimizer):
    """var -= lr sign(beta_1 m + (1 - beta_1) g); m = beta_2 m + (1 - beta_2) g."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(f"Lion: beta_1 must be in (0, 1] (otherwise the optimizer degenerates to SignSGD), "
                             f"received beta_1={beta_1}")
        self.beta_1, self.beta_2 = beta_1, beta_2

    def slot_names(self):
        return ["momentum"]

    def update_step(self, gradient, variable, learning_rate):
        (m,) = self.slots_of(variable)
        b1, b2 = _f32(self.beta_1), _f32(self.beta_2)
        _optim.update("lion", variable, gradient, m, learning_rate, float(b1), float(_f32(1) - b1), float(b2),
                     float(_f32(1) - b2))

    update_step_sparse = update_step   # rows without gradient still move by sign(beta_1 m)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}

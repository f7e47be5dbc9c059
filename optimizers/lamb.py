"""LAMB: Adam's update scaled per variable by the trust ratio |var| / |update|."""
import numpy as np

from ..backend import optim as _optim
from .optimizer import Optimizer

_f32 = np.float32


class Lamb(Optimizer):
    """m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2);
    update = m_hat / (sqrt(v_hat) + epsilon); var -= (|var| / |update|) lr update."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def slot_names(self):
        return ["momentum", "velocity"]

    def update_step(self, gradient, variable, learning_rate):
        m, v = self.slots_of(variable)
        t = _f32(self.iterations + 1)
        one_m_b1p = _f32(1) - _f32(self.beta_1) ** t
        one_m_b2p = _f32(1) - _f32(self.beta_2) ** t
        _optim.update("lamb", variable, gradient, m, v, learning_rate, 1 - self.beta_1, 1 - self.beta_2,
                     self.epsilon, float(one_m_b1p), float(one_m_b2p))

    update_step_sparse = update_step   # moments decay on every row and the norms span the variable

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

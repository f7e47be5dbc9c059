"""FTRL-proximal (Follow The Regularized Leader), with L1, L2 and L2-shrinkage regularization."""
import numpy as np

from ..backend import optim as _optim
from .optimizer import Optimizer

_f32 = np.float32


class Ftrl(Optimizer):
    """accumulator += g^2; linear += g + 2 s var - (acc_new^-p - acc^-p) / lr var;
    var = (clip(linear, -l1, l1) - linear) / (acc_new^-p / lr + 2 (l2 + beta / (2 lr)))
    with p = learning_rate_power and s = l2_shrinkage_regularization_strength."""

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 l2_shrinkage_regularization_strength=0.0, beta=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        for arg, value in (("initial_accumulator_value", initial_accumulator_value),
                           ("l1_regularization_strength", l1_regularization_strength),
                           ("l2_regularization_strength", l2_regularization_strength),
                           ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength)):
            if value < 0.0:
                raise ValueError(f"Ftrl: {arg} must be positive or zero, received {arg}={value}")
        if learning_rate_power > 0.0:
            raise ValueError(f"Ftrl: learning_rate_power must be negative or zero, received "
                             f"learning_rate_power={learning_rate_power}")
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta

    def slot_names(self):
        return ["accumulator", "linear"]

    def _make_slot(self, var, slot_name):
        value = self.initial_accumulator_value if slot_name == "accumulator" else 0.0
        return self._reference_slot(var, slot_name, value)

    def update_step(self, gradient, variable, learning_rate):
        acc, lin = self.slots_of(variable)
        lr = _f32(learning_rate)
        l2 = _f32(self.l2_regularization_strength) + _f32(self.beta) / (_f32(2.0) * lr)   # float32, as Keras
        _optim.update("ftrl", variable, gradient, acc, lin, learning_rate, -self.learning_rate_power,
                     self.l1_regularization_strength, float(_f32(2) * l2),
                     2 * self.l2_shrinkage_regularization_strength)

    # A row without gradient is still set to its proximal value (clip(linear) - linear) / quadratic,
    # as the dense rule does: the row kernel walks all rows.
    update_step_sparse = update_step

    def get_config(self):
        return {**super().get_config(), "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength": self.l2_shrinkage_regularization_strength,
                "beta": self.beta}

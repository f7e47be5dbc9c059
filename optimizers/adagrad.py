"""Adagrad: per-coordinate rates from the accumulated squared gradients."""
from ..backend import optim as _optim
from .optimizer import Optimizer


class Adagrad(Optimizer):
    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if initial_accumulator_value < 0:
            raise ValueError(f"Adagrad: initial_accumulator_value must be >= 0, received {initial_accumulator_value}")
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def slot_names(self):
        return ["accumulator"]

    def _make_slot(self, var, slot_name):
        return self._reference_slot(var, slot_name, self.initial_accumulator_value)

    def update_step(self, gradient, variable, learning_rate):
        _optim.update("adagrad", variable, gradient, self.slots_of(variable)[0], learning_rate, self.epsilon)

    # a zero gradient row changes neither the accumulator nor the weights: only the gradient's rows
    update_step_sparse = update_step

    def _sparse_rows_only(self):
        return True

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}

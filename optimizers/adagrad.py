"""Adagrad: per-coordinate rates from the accumulated squared gradients."""
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
        acc = self.slots_of(variable)[0]
        variable.device.kernels.adagrad(variable._buf, gradient._buf, acc._buf, learning_rate, self.epsilon)

    def update_step_sparse(self, gradient, variable, learning_rate):
        # a zero gradient row changes neither the accumulator nor the weights: only the gradient's rows
        acc = self.slots_of(variable)[0]
        variable.device.kernels.adagrad_sparse(variable._buf, gradient.row_size, gradient.indices._buf,
                                               gradient.values._buf, acc._buf, learning_rate, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}

"""Stochastic gradient descent with optional (Nesterov) momentum."""
from ..backend import optim as _optim
from .optimizer import Optimizer


class SGD(Optimizer):
    """velocity = momentum * velocity - lr * g; w += velocity (Nesterov: w += momentum * velocity - lr * g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1], received {momentum}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def slot_names(self):
        return ["momentum"] if self.momentum else []

    def _sparse_rows_only(self):
        return not self.momentum   # the velocity of every row decays

    def update_step(self, gradient, variable, learning_rate):
        vel = self.slots_of(variable)[0] if self.momentum else variable
        _optim.update("sgd", variable, gradient, vel, learning_rate, self.momentum, self.nesterov)

    _multi_kernel = "sgd"

    def _multi_args(self, variables, lr):
        if type(self).update_step is not SGD.update_step:
            return None
        vels = [self.slots_of(v)[0] for v in variables] if self.momentum else list(variables)
        return vels, lr, self.momentum, self.nesterov

    # without momentum only the gradient's rows change; with it every row's velocity decays
    update_step_sparse = update_step

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

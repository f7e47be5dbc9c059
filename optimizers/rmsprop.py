"""RMSprop (optionally centered, with momentum), Keras 3's update rule."""
from ..backend import optim as _optim
from .optimizer import Optimizer


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, bool(centered)

    def slot_names(self):
        return ["velocity"] + (["momentum"] if self.momentum > 0 else []) + (["average_gradient"] if self.centered else [])

    def _slot_groups(self):
        return [[n] for n in self.slot_names()]   # Keras: all velocities, then momentums, then averages

    def update_step(self, gradient, variable, learning_rate):
        slots = self.slots_of(variable)
        vel = slots[0]
        mom = slots[1] if self.momentum > 0 else vel
        ag = slots[-1] if self.centered else vel
        _optim.update("rmsprop", variable, gradient, vel, ag, mom, learning_rate, self.rho, self.momentum, self.epsilon,
                      self.centered)

    # every row's velocity (and momentum, average gradient) decays: a row kernel over all rows
    update_step_sparse = update_step

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}

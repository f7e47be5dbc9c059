"""RMSprop (optionally centered, with momentum), Keras 3's update rule."""
from .optimizer import Optimizer


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, bool(centered)

    def slot_names(self):
        return ["velocity"] + (["momentum"] if self.momentum > 0 else []) + (["average_gradient"] if self.centered else [])

    def _slot_groups(self):
        return [[n] for n in self.slot_names()]   # Keras: all velocities, then momentums, then averages

    def _slot_bufs(self, variable):
        slots = self.slots_of(variable)
        vel = slots[0]._buf
        mom = slots[1]._buf if self.momentum > 0 else vel
        ag = slots[-1]._buf if self.centered else vel
        return vel, ag, mom

    def update_step(self, gradient, variable, learning_rate):
        vel, ag, mom = self._slot_bufs(variable)
        variable.device.kernels.rmsprop(variable._buf, gradient._buf, vel, ag, mom, learning_rate, self.rho,
                                        self.momentum, self.epsilon, self.centered)

    def update_step_sparse(self, gradient, variable, learning_rate):
        # every row's velocity (and momentum, average gradient) decays: a row kernel over all rows
        vel, ag, mom = self._slot_bufs(variable)
        variable.device.kernels.rmsprop_sparse(variable._buf, gradient.row_size, gradient.indices._buf,
                                               gradient.values._buf, vel, ag, mom, learning_rate, self.rho,
                                               self.momentum, self.epsilon, self.centered)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}

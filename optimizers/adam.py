"""Adam (with AMSGrad) and AdamW (decoupled weight decay)."""
from ..backend import optim as _optim
from .optimizer import Optimizer


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, bool(amsgrad)

    def slot_names(self):
        return ["momentum", "velocity", "velocity_hat"] if self.amsgrad else ["momentum", "velocity"]   # Keras's names

    def _slot_groups(self):
        # Keras: momentums and velocities interleaved, then the velocity_hats
        return [["momentum", "velocity"], ["velocity_hat"]] if self.amsgrad else [["momentum", "velocity"]]

    _fused_weight_decay = True   # the kernel decays the weights (var -= var * weight_decay * lr) first

    def _lr_t(self, learning_rate):
        t = self.iterations + 1   # this update's step number (Keras's local_step)
        return learning_rate * (1 - self.beta_2 ** t) ** 0.5 / (1 - self.beta_1 ** t)

    def _args(self, variable, learning_rate):
        slots = self.slots_of(variable)
        vhat = slots[2] if self.amsgrad else slots[1]
        wd = self._decay(variable) * learning_rate
        return (slots[0], slots[1], vhat, self._lr_t(learning_rate), self.beta_1, self.beta_2, self.epsilon,
                self.amsgrad, wd)

    def update_step(self, gradient, variable, learning_rate):
        _optim.update("adam", variable, gradient, *self._args(variable, learning_rate))

    _multi_kernel = "adam"

    def _multi_args(self, variables, lr):
        if type(self).update_step is not Adam.update_step:
            return None
        slots = [self.slots_of(v) for v in variables]
        return ([s[0] for s in slots], [s[1] for s in slots], [s[2] if self.amsgrad else s[1] for s in slots],
                self._lr_t(lr), self.beta_1, self.beta_2, self.epsilon, self.amsgrad,
                [self._decay(v) * lr for v in variables])

    # Keras's (dense) semantics: the moments of rows without gradient decay too, so the row kernel
    # walks every row, reading gradient rows through the sorted row list
    update_step_sparse = update_step

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay: w -= w * weight_decay * lr before each update."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number (use Adam for no decay)")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)

"""Schedule-Free AdamW (Defazio et al., 2024): no learning-rate schedule, an interpolation between
the gradient sequence and its running average instead."""
import numpy as np

from ..backend import manipulation as _mp
from ..backend import math as _m
from ..backend.autodiff import no_grad
from ..backend.tensor import Variable
from .optimizer import Optimizer

_f32 = np.float32


class ScheduleFreeAdamW(Optimizer):
    """As Keras's `ScheduleFreeAdamW`. Slots: `momentum` (the sequence z the steps are taken on,
    starting at the weights) and `velocity` (Adam's second moment). With t the step number and
    lr warmed up linearly over `warmup_steps`:

        v = beta_2 v + (1 - beta_2) g^2;   z -= lr g / (sqrt(v / (1 - beta_2^t)) + epsilon)
        x = (y - (1 - beta_1) z_old) / beta_1;   x = (1 - 1/t) x + z / t
        y = (1 - beta_1) z + beta_1 x          (y: the model's weights)

    `weight_decay` (decoupled, var -= var * weight_decay * lr) applies before, as for every
    optimizer. The update is composed of lamina ops (there is no fused kernel for it)."""

    def __init__(self, learning_rate=0.0025, beta_1=0.9, beta_2=0.999, epsilon=1e-8, warmup_steps=0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not 0 < beta_1 <= 1:
            raise ValueError(f"ScheduleFreeAdamW: beta_1 must be in (0, 1] (the weights are recovered by dividing by "
                             f"it), received beta_1={beta_1}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
            raise ValueError(f"ScheduleFreeAdamW: warmup_steps must be an int >= 0, received {warmup_steps!r}")
        self.beta_1, self.beta_2, self.epsilon, self.warmup_steps = beta_1, beta_2, epsilon, int(warmup_steps)

    def slot_names(self):
        return ["momentum", "velocity"]

    def _make_slot(self, var, slot_name):
        if slot_name == "momentum":   # starts at the weights (Keras assigns a copy of each)
            return Variable(_mp.copy(var), trainable=False, name=f"{var.path.replace('/', '_')}_{slot_name}")
        return super()._make_slot(var, slot_name)

    def update_step(self, gradient, variable, learning_rate):
        t = _f32(self.iterations + 1)
        lr = _f32(learning_rate)
        if self.warmup_steps > 0:
            lr = lr * min(t / _f32(self.warmup_steps), _f32(1))
        b1, b2, eps = _f32(self.beta_1), _f32(self.beta_2), _f32(self.epsilon)
        z, v = self.slots_of(variable)
        weight = _f32(1) / t
        with no_grad():
            z_old = _mp.copy(z)
            v.assign_add(_m.multiply(_m.subtract(_m.square(gradient), v), float(_f32(1) - b2)))
            denom = _m.add(_m.sqrt(_m.divide(v, float(_f32(1) - b2 ** t))), float(eps))
            z.assign_sub(_m.divide(_m.multiply(gradient, float(lr)), denom))
            x_old = _m.divide(_m.subtract(variable, _m.multiply(z_old, float(_f32(1) - b1))), float(b1))
            x_new = _m.add(_m.multiply(x_old, float(_f32(1) - weight)), _m.multiply(z, float(weight)))
            variable.assign(_m.add(_m.multiply(z, float(_f32(1) - b1)), _m.multiply(x_new, float(b1))))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "warmup_steps": self.warmup_steps}

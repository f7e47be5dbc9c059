"""Nadam: Adam with Nesterov momentum and Keras's momentum schedule."""
import numpy as np

from ..backend import optim as _optim
from ..backend.device import device as device_scope
from ..backend.tensor import Variable
from .optimizer import Optimizer

_f32 = np.float32


class Nadam(Optimizer):
    """u_t = beta_1 (1 - 0.5 * 0.96^t); u_product = prod of u_1..u_t (state, saved as Keras's last
    variable); m, v as Adam; m_hat = u_{t+1} m / (1 - u_product u_{t+1}) + (1 - u_t) g /
    (1 - u_product); v_hat = v / (1 - beta_2^t); var -= lr m_hat / (sqrt(v_hat) + epsilon)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self._u_product_var = None   # Keras's `_u_product` (float32 scalar), made by build
        self._u_product = None       # its value on the host; None: read it from the variable

    def slot_names(self):
        return ["momentum", "velocity"]

    def build(self, variables):
        if self._u_product_var is None and variables:
            with device_scope(variables[0].device):   # beside the first weight
                self._u_product_var = Variable(np.ones((), np.float32), trainable=False, name="variable")
            self._u_product = _f32(1.0)
        super().build(variables)

    def _extra_variables(self):
        return [self._u_product_var] if self._u_product_var is not None else []

    def _iterations_changed(self):
        self._u_product = None

    def _u_t(self, step):
        return _f32(self.beta_1) * (_f32(1) - _f32(0.5) * _f32(0.96) ** _f32(step))

    def _backend_update_step(self, grads, variables, lr):
        # once per update step, before the variables (float32, as Keras)
        if self._u_product is None:
            self._u_product = _f32(self._u_product_var.numpy())
        t = self.iterations + 1
        self._u_product = _f32(self._u_product * _f32(self.beta_1) *
                               (_f32(1) - _f32(0.5) * _f32(0.96) ** _f32(t)))
        _optim.fill(self._u_product_var, self._u_product)
        u_t, u_t1 = self._u_t(t), self._u_t(t + 1)
        uprod_t1 = self._u_product * u_t1
        b1, b2 = _f32(self.beta_1), _f32(self.beta_2)
        self._step_args = tuple(float(x) for x in (
            _f32(1) - b1, _f32(1) - b2, self.epsilon, u_t1, _f32(1) - uprod_t1, _f32(1) - u_t,
            _f32(1) - self._u_product, _f32(1) - b2 ** _f32(t)))
        super()._backend_update_step(grads, variables, lr)

    def update_step(self, gradient, variable, learning_rate):
        m, v = self.slots_of(variable)
        _optim.update("nadam", variable, gradient, m, v, learning_rate, *self._step_args)

    update_step_sparse = update_step   # moments decay on every row: the row kernel walks all rows

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

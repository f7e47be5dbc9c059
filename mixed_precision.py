"""Mixed precision (Keras's `keras.mixed_precision`):

    lamina.mixed_precision.set_global_policy("mixed_bfloat16")

Layers created afterwards keep float32 weights and compute in bfloat16 (see dtype_policies).
bfloat16 has float32's exponent range, so unlike float16 it needs no loss scaling;
LossScaleOptimizer is here for Keras scripts that use it anyway."""
from .dtype_policies import (DTypePolicy, Policy, dtype_policy, global_policy, set_dtype_policy,  # noqa: F401
                             set_global_policy)
from .optimizers.loss_scale_optimizer import LossScaleOptimizer  # noqa: F401

"""`lamina.ops`: the op namespace, with keras.ops's names and numpy semantics.

    from lamina import ops
    y = ops.matmul(x, w) + b
"""
from .backend.tensor import convert_to_tensor, convert_to_numpy, is_tensor  # noqa: F401
from .backend.math import *  # noqa: F401,F403  (names listed in __all__)
from .backend.math import (abs, all, any, max, min, round, sum, cast, broadcast_to,  # noqa: F401
                           where, clip, mean, zeros, ones, full, zeros_like, ones_like, full_like)
from .backend.linalg import matmul, dot  # noqa: F401
from .backend.manipulation import *  # noqa: F401,F403
from .backend.nn import *  # noqa: F401,F403
from .backend.convolution_transpose import conv_transpose  # noqa: F401
from .backend.random import *  # noqa: F401,F403
from .backend.rnn import *  # noqa: F401,F403
from .backend.extra import *  # noqa: F401,F403
from .backend.einsum import einsum  # noqa: F401
from .backend.attention import dot_product_attention  # noqa: F401
from .backend.numpy_extra import *  # noqa: F401,F403
from .backend.nn_extra import *  # noqa: F401,F403
from .backend.control_flow import *  # noqa: F401,F403
from .backend.special import *  # noqa: F401,F403
from .backend.linalg_ops import *  # noqa: F401,F403  (its norm, numpy.linalg.norm's, replaces extra's)
from .backend import linalg_ops as linalg  # noqa: F401  (lamina.ops.linalg.<name>, as keras.ops.linalg)
from .backend.fft import *  # noqa: F401,F403

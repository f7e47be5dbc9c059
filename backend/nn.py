"""Neural-network ops (activations, softmax, losses, normalisation, dropout, embedding), with
gradients. Convolution and pooling live in convolution.py and are re-exported here."""
__all__ = []

from .convolution import *  # noqa: E402,F401,F403
from .convolution import __all__ as _conv_all  # noqa: E402

__all__ = __all__ + list(_conv_all)

"""Real Keras (JAX backend) as a reference, when it is installed: `keras_or_none()`."""
import os


def keras_or_none():
    try:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras
    except ImportError:
        return None
    return keras

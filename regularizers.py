"""Weight regularizers (`l1`, `l2`, `l1_l2`), by name or object, as `keras.regularizers`."""
from .backend import math as _m


class Regularizer:
    def __call__(self, x):
        return 0.0

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    """penalty = l1 * sum(|x|) + l2 * sum(x^2)."""

    def __init__(self, l1=0.0, l2=0.0):
        for n, v in (("l1", l1), ("l2", l2)):
            if v is None or float(v) < 0:
                raise ValueError(f"{type(self).__name__}: {n} must be a non-negative number, received {v!r}")
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, x):
        out = None
        if self.l1:
            out = _m.multiply(_m.sum(_m.abs(x)), self.l1)
        if self.l2:
            t = _m.multiply(_m.sum(_m.square(x)), self.l2)
            out = t if out is None else _m.add(out, t)
        return out if out is not None else _m.zeros(())

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def l1(l1=0.01):
    return L1(l1)


def l2(l2=0.01):
    return L2(l2)


def l1_l2(l1=0.01, l2=0.01):
    return L1L2(l1, l2)


_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier):
    """A regularizer from None, a Regularizer or callable, a name ('l2'), or a config dict (Keras's
    form with "module"/"registered_name", or the legacy {"class_name", "config"})."""
    if identifier is None:
        return None
    if isinstance(identifier, Regularizer) or callable(identifier) and not isinstance(identifier, type):
        return identifier
    from . import saving
    return saving.get_small_object(identifier, _BY_NAME, "regularizer", "'l1', 'l2' or 'l1_l2'")


def serialize(reg):
    """Keras's form: {"module": "keras.regularizers", "class_name", "config", "registered_name"}."""
    if reg is None:
        return None
    from . import saving
    return saving.serialize_keras_object(reg)


deserialize = get

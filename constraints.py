"""Weight constraints, as `keras.constraints`: functions applied to a variable after each
optimizer update (`Dense(kernel_constraint=MaxNorm(2))`). Formulas as Keras 3's."""
from .backend import math as _m
from .backend.settings import epsilon



class Constraint:
    """Base class: `__call__(w)` returns the projected value of `w`."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _norms(w, axis):
    return _m.sqrt(_m.sum(_m.square(w), axis=axis, keepdims=True))


def _axis(axis, cls):
    if isinstance(axis, (list, tuple)):
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in axis):
            raise ValueError(f"{cls}: `axis` must be an int or a list of ints, received axis={axis!r}")
        return list(axis)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ValueError(f"{cls}: `axis` must be an int or a list of ints, received axis={axis!r}")
    return axis


class MaxNorm(Constraint):
    """Rescales the weights along `axis` whose norm exceeds `max_value` down to that norm."""

    def __init__(self, max_value=2, axis=0):
        if max_value is None or float(max_value) < 0:
            raise ValueError(f"MaxNorm: max_value must be a non-negative number, received {max_value!r}")
        self.max_value, self.axis = float(max_value), _axis(axis, "MaxNorm")

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = _m.clip(norms, 0.0, self.max_value)
        return _m.multiply(w, _m.divide(desired, _m.add(norms, epsilon())))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    """Norms along `axis` moved towards [min_value, max_value] at `rate` (1 = projected at once)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        if not 0 <= float(min_value) <= float(max_value):
            raise ValueError(f"MinMaxNorm: expected 0 <= min_value <= max_value, received min_value={min_value!r}, "
                             f"max_value={max_value!r}")
        if not 0 <= float(rate) <= 1:
            raise ValueError(f"MinMaxNorm: rate must be in [0, 1], received rate={rate!r}")
        self.min_value, self.max_value, self.rate = float(min_value), float(max_value), float(rate)
        self.axis = _axis(axis, "MinMaxNorm")

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = _m.add(_m.multiply(_m.clip(norms, self.min_value, self.max_value), self.rate),
                         _m.multiply(norms, 1.0 - self.rate))
        return _m.multiply(w, _m.divide(desired, _m.add(norms, epsilon())))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


class NonNeg(Constraint):
    """Sets negative weights to zero."""

    def __call__(self, w):
        return _m.multiply(w, _m.cast(_m.greater_equal(w, 0.0), w.dtype))


class UnitNorm(Constraint):
    """Scales the weights along `axis` to norm 1."""

    def __init__(self, axis=0):
        self.axis = _axis(axis, "UnitNorm")

    def __call__(self, w):
        return _m.divide(w, _m.add(_norms(w, self.axis), epsilon()))

    def get_config(self):
        return {"axis": self.axis}


max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm
MaxNormConstraint = MaxNorm

_BY_NAME = {"MaxNorm": MaxNorm, "MinMaxNorm": MinMaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm,
            "max_norm": MaxNorm, "min_max_norm": MinMaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm}


def get(identifier):
    """A constraint from None, an instance, a callable, a name ('max_norm', 'NonNeg', ...) or a
    serialized dict (Keras's form with "module"/"registered_name", or {"class_name", "config"})."""
    if identifier is None:
        return None
    if isinstance(identifier, Constraint) or callable(identifier) and not isinstance(identifier, type):
        return identifier
    from . import saving
    return saving.get_small_object(identifier, _BY_NAME, "constraint", f"one of {sorted(_BY_NAME)} or a callable")


def serialize(constraint):
    """Keras's form: {"module": "keras.constraints", "class_name", "config", "registered_name"}."""
    if constraint is None:
        return None
    if not isinstance(constraint, Constraint):
        raise TypeError(f"Cannot serialize the constraint {constraint!r}: only lamina.constraints.Constraint "
                        "subclasses have a config. Subclass Constraint and define get_config().")
    from . import saving
    return saving.serialize_keras_object(constraint)


deserialize = get

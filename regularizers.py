"""Weight regularizers (`l1`, `l2`, `l1_l2`, `orthogonal_regularizer`), by name or object, as
`keras.regularizers`."""
import math

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


# Keras 3's other names of the classes (so l1_l2() is L1L2(0, 0), as there)
l1, l2, l1_l2 = L1, L2, L1L2


class OrthogonalRegularizer(Regularizer):
    """Pushes the rows (`mode="rows"`) or columns of a 2-D kernel towards orthogonality, as
    Keras's: factor * 0.5 * sum(|off-diagonal of V V^T|) / (n (n - 1) / 2), V the n rows (or
    columns) scaled to unit L2 norm, i.e. factor times the mean |cosine| over the pairs."""

    def __init__(self, factor=0.01, mode="rows"):
        if (isinstance(factor, bool) or not isinstance(factor, (int, float)) or math.isinf(factor)
                or math.isnan(factor) or factor < 0):
            raise ValueError(f"OrthogonalRegularizer: factor must be a non-negative number, received factor={factor!r}")
        if mode not in ("rows", "columns"):
            raise ValueError(f"OrthogonalRegularizer: mode must be 'rows' or 'columns', received mode={mode!r}")
        self.factor, self.mode = float(factor), mode

    def __call__(self, x):
        from . import ops
        if len(x.shape) != 2:
            raise ValueError("OrthogonalRegularizer needs a rank-2 weight (a Dense kernel, for example); received "
                             f"a weight of shape {tuple(x.shape)}")
        rows = self.mode == "rows"
        v = ops.normalize(x, axis=1 if rows else 0)
        product = ops.matmul(v, ops.transpose(v)) if rows else ops.matmul(ops.transpose(v), v)
        size = x.shape[0] if rows else x.shape[1]
        off = ops.multiply(product, ops.subtract(1.0, ops.eye(size)))
        return ops.multiply(ops.sum(ops.absolute(off)), self.factor * 0.5 / (size * (size - 1.0) / 2.0))

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


orthogonal_regularizer = OrthogonalRegularizer

_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2,
            "orthogonal_regularizer": OrthogonalRegularizer, "OrthogonalRegularizer": OrthogonalRegularizer}


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

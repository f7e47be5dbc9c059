"""Optimizers by name ("adam") or object, as `keras.optimizers`; each update is one fused kernel."""
from . import schedules  # noqa: F401
from .adadelta import Adadelta
from .adafactor import Adafactor
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .ftrl import Ftrl
from .lamb import Lamb
from .lion import Lion
from .loss_scale_optimizer import LossScaleOptimizer
from .multi_optimizer import MultiOptimizer, OptimizerMap  # noqa: F401
from .muon import Muon
from .nadam import Nadam
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .schedule_free_adamw import ScheduleFreeAdamW
from .sgd import SGD

_ALL = (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Ftrl, Lion, Lamb, Adafactor, Muon,
        ScheduleFreeAdamW)
_BY_NAME = {c.__name__.lower(): c for c in _ALL}
# wrappers need their inner optimizer(s): by config only, not by a bare name
_CLASSES = {c.__name__: c for c in _ALL + (LossScaleOptimizer, MultiOptimizer)}


def get(identifier):
    """An optimizer from a name, a config dict or an Optimizer."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer {identifier!r}; expected one of {sorted(_BY_NAME)} or an Optimizer")
        return cls()
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Unknown optimizer class {identifier.get('class_name')!r}; expected one of "
                             f"{sorted(_CLASSES)}")
        return cls.from_config(identifier.get("config", {}))
    raise TypeError(f"Could not interpret optimizer {identifier!r}: expected a name or an Optimizer instance")


def serialize(opt):
    return {"class_name": type(opt).__name__, "config": opt.get_config()}


def deserialize(config):
    """An optimizer from serialize()'s dict (Keras's `{"class_name", "config"}`)."""
    return get(config)

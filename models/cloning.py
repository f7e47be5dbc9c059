"""`clone_model`, as `keras.models.clone_model` (Keras 3's keras/src/models/cloning.py): the same
architecture with new layers, so new, freshly initialised weights.

- Sequential and Functional models (and subclasses of Model built as `MyModel(inputs, outputs)`)
  are rebuilt layer by layer: each layer becomes `clone_function(layer)` (default: a new layer
  from its config), a layer shared in the graph is cloned once, `call_function(layer, *args,
  **kwargs)` may replace each call (Functional only), `recursive=True` clones nested
  Sequential/Functional models the same way, and `input_tensors` replace the inputs. A compiled
  model gives a clone compiled the same way (a new optimizer).
- Any other (subclassed) model is rebuilt from its config, as Keras does:
  `type(model).from_config(model.get_config())` (its own class given as a custom object), built
  from its build config (the input shape of its first call, so the clone has its weights at once)
  and compiled from its compile config. The class must implement `get_config()` returning every
  argument its `__init__` needs (and `from_config()` when `cls(**config)` cannot rebuild it);
  `clone_function`, `call_function` and `input_tensors` are refused for it, with Keras's
  conditions, since its layers are not a graph that can be rebuilt.

Like Keras, cloning does not keep objects shared between layers shared (two layers given one
regularizer get one each). lamina's own subclassed models (e.g. `Seq2Seq`) clone through their
config like any other; such a model saves to a '.keras' file that lamina loads and Keras cannot
(Keras has no class for it)."""
import inspect

from ..layers.input_layer import Input, InputLayer, KerasTensor
from ..layers.core import SymbolicOp
from ..layers.layer import Layer, flatten, map_structure


def _clone_layer(layer):
    if isinstance(layer, SymbolicOp):  # an op called on symbolic tensors: no config, no state
        return layer.copy()
    return type(layer).from_config(layer.get_config())


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive=False, **kwargs):
    """A copy of `model` with new layers (see the module docstring). `input_tensors`: Input
    tensors to build the copy on; `clone_function(layer)`: the layer to use for each layer;
    `call_function(layer, *args, **kwargs)`: calls each cloned layer (Functional models only);
    `recursive`: clone nested Sequential/Functional models with clone_model too."""
    from .model import Functional, Model
    from .sequential import Sequential
    cache = kwargs.pop("cache", None)
    if kwargs:
        raise ValueError(f"clone_model: unexpected keyword argument(s) {tuple(kwargs)}")
    if not isinstance(model, Model):
        raise TypeError(f"clone_model expects a lamina Model (Sequential, Functional or a subclass), received "
                        f"{type(model).__name__}")
    if clone_function is not None and not callable(clone_function):
        raise ValueError(f"clone_model: clone_function must be a callable, received {clone_function!r}")
    if isinstance(model, Sequential):
        if call_function is not None:
            raise ValueError("clone_model: `call_function` is not supported with Sequential models: their layers "
                             "are not called while the model is built, only listed. Use call_function with "
                             f"Functional models only. Received model '{model.name}' of type "
                             f"{type(model).__name__}, with call_function={call_function}")
        fn = _wrap_clone_function(clone_function, None, recursive, cache)
        return _compiled_like(model, _clone_sequential(model, input_tensors, fn))
    if isinstance(model, Functional):
        fn = _wrap_clone_function(clone_function, call_function, recursive, cache)
        return _compiled_like(model, _clone_functional(model, input_tensors, fn, call_function))
    # a subclassed model: rebuilt from its config (Keras's conditions and order of checks)
    if clone_function is not None or input_tensors is not None:
        raise ValueError("clone_model: arguments `clone_function` and `input_tensors` are only supported for "
                         f"Sequential models or Functional models. Received model '{model.name}' of type "
                         f"{type(model).__name__} (a subclassed model), with clone_function={clone_function} and "
                         f"input_tensors={input_tensors}. Clone it without them (it is rebuilt from its "
                         "get_config()), or build the model as a Functional one.")
    if call_function is not None:
        raise ValueError("clone_model: argument `call_function` is only supported for Functional models. Received "
                         f"model '{model.name}' of type {type(model).__name__} (a subclassed model), with "
                         f"call_function={call_function}")
    return _clone_from_config(model)


def _wrap_clone_function(clone_function, call_function=None, recursive=False, cache=None):
    """clone_function with Keras's layer cache (a layer met twice is cloned once) and, with
    `recursive`, nested Sequential/Functional models cloned by clone_model."""
    from .model import Functional
    from .sequential import Sequential
    clone_function = clone_function or _clone_layer
    cache = {} if cache is None else cache

    def wrapped(layer):
        if id(layer) in cache:
            return cache[id(layer)][1]
        if recursive and isinstance(layer, Sequential):
            clone = clone_model(layer, clone_function=clone_function, recursive=True, cache=cache)
        elif recursive and isinstance(layer, Functional):
            clone = clone_model(layer, clone_function=clone_function, call_function=call_function, recursive=True,
                                cache=cache)
        else:
            clone = clone_function(layer)
        cache[id(layer)] = (layer, clone)   # the original is kept so that its id is not reused
        return clone
    return wrapped


def _compiled_like(model, clone):
    """The clone compiled as `model` was (Keras 3 compiles the clone of a compiled model)."""
    if getattr(model, "compiled", False):
        config = model.get_compile_config()
        if config:
            clone.compile_from_config(config)
    return clone


# ---- subclassed models ---------------------------------------------------------------------------

_BASE_INIT_ARGS = {"self", "name", "trainable", "dtype", "autocast"}


def _own_get_config(cls):
    """Whether `cls` (or a class between it and Model) defines get_config."""
    from .model import Functional, Model
    from .trainer import Trainer
    for klass in cls.__mro__:
        if klass in (Model, Functional, Trainer, Layer, object):
            return False
        if "get_config" in vars(klass):
            return True
    return False


def _own_init_args(cls):
    """The arguments `cls.__init__` takes besides the base ones (name, trainable, dtype, **kwargs)."""
    try:
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.name not in _BASE_INIT_ARGS and
            p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _clone_from_config(model):
    """Keras's clone of a subclassed model: serialize it (config, build config, compile config)
    and deserialize it with its own class in scope."""
    from ..saving import CustomObjectScope, _from_config, serialize_keras_object
    cls = type(model)
    who = f"clone_model: '{model.name}' is a subclassed model ({cls.__name__})"
    how = (f"Implement {cls.__name__}.get_config() returning the arguments of __init__ (config = "
           "super().get_config(); config.update(units=self.units, ...); return config), and a classmethod "
           "from_config(cls, config) when cls(**config) cannot rebuild the model (e.g. an argument that is a layer "
           "or another object: deserialize it there). Or build the model as a Functional one, which clone_model "
           "rebuilds layer by layer.")
    own = _own_init_args(cls)
    if not _own_get_config(cls) and own and "from_config" not in vars(cls):
        raise NotImplementedError(f"{who}: it is rebuilt from get_config(), but {cls.__name__} does not implement "
                                  f"get_config(), so the arguments of its __init__ ({', '.join(own)}) are not "
                                  f"known. {how}")
    config = serialize_keras_object(model)
    custom = {cls.__name__: cls}
    with CustomObjectScope(custom):
        try:
            clone = _from_config(cls, config["config"], custom)
        except TypeError as e:   # Keras: "Unable to revive model from config"
            raise TypeError(f"{who}: {cls.__name__}.from_config({cls.__name__}.get_config()) failed ({e}). "
                            f"{how}") from e
        if not isinstance(clone, cls):
            raise TypeError(f"{who}: {cls.__name__}.from_config() returned a {type(clone).__name__}, not a "
                            f"{cls.__name__}")
        build_config = config.get("build_config")
        if build_config and not clone.built:
            clone.build_from_config(build_config)
        if config.get("compile_config"):
            clone.compile_from_config(config["compile_config"])
    return clone


# ---- Functional and Sequential --------------------------------------------------------------------

def _check_inputs(input_tensors, expected, who):
    tensors = flatten(input_tensors) if isinstance(input_tensors, (list, tuple, dict)) else [input_tensors]
    if len(tensors) != expected:
        raise ValueError(f"clone_model: model '{who}' has {expected} input(s), input_tensors has {len(tensors)}")
    for t in tensors:
        if not isinstance(t, KerasTensor) or t._keras_history is None:
            raise ValueError(f"clone_model: input_tensors must be lamina.Input(...) tensors, received {t!r}")
    return tensors


def _functional_like_constructor(cls):
    """Keras's test for a Functional subclass that can be rebuilt as cls(inputs, outputs, name=)."""
    from .model import Functional
    try:
        spec = inspect.getfullargspec(cls.__init__)
    except TypeError:
        return False
    if spec.args[1:] == inspect.getfullargspec(Functional.__init__).args[1:]:
        return True
    return spec.varargs is not None and spec.varkw is not None


def _clone_functional(model, input_tensors, clone_function, call_function=None):
    from .model import Functional, _FUNCTIONAL_SUBCLASSES
    new = {}          # id(old KerasTensor) -> new tensor
    if input_tensors is not None:
        for old, t in zip(model.inputs, _check_inputs(input_tensors, len(model.inputs), model.name)):
            new[id(old)] = t
    else:
        for old in model.inputs:
            layer = old._keras_history[0]
            new[id(old)] = Input(batch_shape=old.shape, dtype=old.dtype, name=layer.name)

    def sub(x):
        return new[id(x)] if isinstance(x, KerasTensor) else x
    for node in model._nodes:
        layer = node.layer
        if isinstance(layer, InputLayer):
            continue
        clone = clone_function(layer)
        args, kwargs = node.call_args
        args = [map_structure(sub, a) for a in args]
        kwargs = {k: map_structure(sub, v) for k, v in kwargs.items()}
        out = call_function(clone, *args, **kwargs) if call_function is not None else clone(*args, **kwargs)
        for old, t in zip(node.outputs, flatten(out)):
            new[id(old)] = t
    missing = [t.name for t in model.outputs if id(t) not in new]
    if missing:
        raise ValueError(f"clone_model: could not recompute the outputs {missing} of model '{model.name}'")
    inputs = map_structure(lambda t: new[id(t)], model._inputs_struct)
    outputs = map_structure(lambda t: new[id(t)], model._outputs_struct)
    cls = type(model)
    # `class M(Model)` built as M(inputs, outputs) is a generated Functional subclass of M
    user_cls = next((k for k, v in _FUNCTIONAL_SUBCLASSES.items() if v is cls), cls)
    if cls is not Functional and _functional_like_constructor(user_cls):
        return user_cls(inputs, outputs, name=model.name)
    return Functional(inputs, outputs, name=model.name, trainable=model.trainable)


def _clone_sequential(model, input_tensors, clone_function):
    from .sequential import Sequential
    layers = [clone_function(l) for l in model.layers]
    first = model._stack[0] if model._stack else None
    if input_tensors is not None:
        if isinstance(input_tensors, (list, tuple)) and len(input_tensors) != 1:
            raise ValueError(f"clone_model: a Sequential model has one input, input_tensors has {len(input_tensors)}")
        (t,) = _check_inputs(input_tensors, 1, model.name)
        head = [t]
    elif isinstance(first, InputLayer):
        head = [InputLayer(batch_shape=first.batch_shape, dtype=first.dtype, name=first.name)]
    elif model._input_kt is not None:
        head = [InputLayer(batch_shape=model._input_kt.shape, dtype=model._input_kt.dtype)]
    else:
        head = []
    return Sequential(head + layers, name=model.name, trainable=model.trainable)

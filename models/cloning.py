"""`clone_model`, as `keras.models.clone_model`: the same architecture with new layers (new,
freshly initialised weights), for Functional and Sequential models."""
from ..layers.input_layer import Input, InputLayer, KerasTensor
from ..layers.layer import flatten, map_structure


def _clone_layer(layer):
    return type(layer).from_config(layer.get_config())


def clone_model(model, input_tensors=None, clone_function=None):
    """A copy of `model` whose layers are `clone_function(layer)` (default: a new layer of the same
    config, so new weights); a layer shared in the graph is cloned once. `input_tensors`
    (Input tensors) replace the model's inputs."""
    from .model import Functional, Model
    from .sequential import Sequential
    clone_function = clone_function or _clone_layer
    if isinstance(model, Sequential):
        return _clone_sequential(model, input_tensors, clone_function)
    if isinstance(model, Functional):
        return _clone_functional(model, input_tensors, clone_function)
    if isinstance(model, Model):
        raise ValueError(f"clone_model: '{model.name}' is a subclassed model ({type(model).__name__}); only "
                         "Functional and Sequential models can be cloned. Create a new instance of the class "
                         "instead (e.g. type(model).from_config(model.get_config())).")
    raise TypeError(f"clone_model expects a Functional or Sequential model, received {type(model).__name__}")


def _check_inputs(input_tensors, expected, who):
    tensors = flatten(input_tensors) if isinstance(input_tensors, (list, tuple, dict)) else [input_tensors]
    if len(tensors) != expected:
        raise ValueError(f"clone_model: model '{who}' has {expected} input(s), input_tensors has {len(tensors)}")
    for t in tensors:
        if not isinstance(t, KerasTensor) or t._keras_history is None:
            raise ValueError(f"clone_model: input_tensors must be lamina.Input(...) tensors, received {t!r}")
    return tensors


def _clone_functional(model, input_tensors, clone_function):
    from .model import Functional
    new = {}          # id(old KerasTensor) -> new tensor
    if input_tensors is not None:
        for old, t in zip(model.inputs, _check_inputs(input_tensors, len(model.inputs), model.name)):
            new[id(old)] = t
    else:
        for old in model.inputs:
            layer = old._keras_history[0]
            new[id(old)] = Input(batch_shape=old.shape, dtype=old.dtype, name=layer.name)
    clones = {}

    def sub(x):
        return new[id(x)] if isinstance(x, KerasTensor) else x
    for node in model._nodes:
        layer = node.layer
        if isinstance(layer, InputLayer):
            continue
        if id(layer) not in clones:
            clones[id(layer)] = clone_function(layer)
        args, kwargs = node.call_args
        out = clones[id(layer)](*[map_structure(sub, a) for a in args],
                                **{k: map_structure(sub, v) for k, v in kwargs.items()})
        for old, t in zip(node.outputs, flatten(out)):
            new[id(old)] = t
    missing = [t.name for t in model.outputs if id(t) not in new]
    if missing:
        raise ValueError(f"clone_model: could not recompute the outputs {missing} of model '{model.name}'")
    inputs = map_structure(lambda t: new[id(t)], model._inputs_struct)
    outputs = map_structure(lambda t: new[id(t)], model._outputs_struct)
    return Functional(inputs, outputs, name=model.name, trainable=model.trainable)


def _clone_sequential(model, input_tensors, clone_function):
    from .sequential import Sequential
    layers = [clone_function(l) for l in model.layers]
    first = model._stack[0] if model._stack else None
    if input_tensors is not None:
        (t,) = _check_inputs(input_tensors, 1, model.name)
        head = [t]
    elif isinstance(first, InputLayer):
        head = [InputLayer(batch_shape=first.batch_shape, dtype=first.dtype, name=first.name)]
    elif model._input_kt is not None:
        head = [InputLayer(batch_shape=model._input_kt.shape, dtype=model._input_kt.dtype)]
    else:
        head = []
    return Sequential(head + layers, name=model.name, trainable=model.trainable)

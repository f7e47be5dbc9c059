"""Layers to configs and back, in Keras 3's form ({"module": "keras.layers", "class_name",
"config", "registered_name", "build_config"}), as `keras.layers.serialize` / `deserialize`.

Configs in the legacy {"class_name", "config"} form (Keras's .h5 files, Keras 2's JSON) are read
too, converted as Keras 3's legacy loader converts them (keras/src/legacy/saving/saving_utils.py,
`model_from_config`): an `axis` saved as a one-element list (Keras 2's BatchNormalization wrote
`[3]`) becomes the int, and a Keras 2 Lambda's `module`, `function_type`, `output_shape_type` and
`output_shape_module` are dropped. The other Keras 2 keys that Keras 3 also accepts are taken by
the layers themselves (`batch_input_shape`, `input_dim`, Embedding's `input_length`, LeakyReLU's
`alpha`, the recurrent layers' `implementation`); the ones Keras 3 refuses (`time_major`, the
`groups=1` tf.keras wrote for DepthwiseConv2D, Attention's `causal`...) are refused with an error
that says so (see saving._KERAS2_KEYS)."""

# Keras 2's Lambda arguments that Keras 3 drops when it reads a legacy config
_LAMBDA_DEP_ARGS = ("module", "function_type", "output_shape_type", "output_shape_module")


def serialize(layer):
    """The layer's config in Keras's serialized form."""
    from ..saving import serialize_keras_object
    return serialize_keras_object(layer)


def deserialize(config, custom_objects=None):
    """A new layer (or model) from a serialized config; custom classes come from `custom_objects`,
    the `custom_object_scope` or the registry. An unknown class is named in a ValueError."""
    from ..saving import deserialize_keras_object
    from .layer import Layer
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"A layer config is a dict with 'class_name' and 'config', received {config!r}")
    if "module" not in config:
        config = _from_legacy(config)
    from .core import keras_op
    op = keras_op(config.get("module"), config["class_name"], config.get("config"))
    if op is not None:   # an op node of a functional model, saved as Keras's Operation
        return op
    if config["class_name"] == "Lambda" and isinstance(config.get("config"), dict):
        config = {**config, "config": _lambda_config(config["config"], custom_objects)}
    layer = deserialize_keras_object(config, custom_objects=custom_objects, printable_module_name="layer class")
    if not isinstance(layer, Layer):
        raise ValueError(f"The config of class '{config['class_name']}' does not describe a layer "
                         f"(it gave a {type(layer).__name__})")
    return layer


def _from_legacy(config):
    """A legacy layer entry with Keras 3's conversions applied (a copy; the input is not changed)."""
    inner = config.get("config")
    if not isinstance(inner, dict):
        return config
    inner = dict(inner)
    axis = inner.get("axis")
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
        inner["axis"] = int(axis[0])
    elif isinstance(axis, float):
        inner["axis"] = int(axis)
    if config.get("class_name") == "Lambda":
        for key in _LAMBDA_DEP_ARGS:
            inner.pop(key, None)
    return {**config, "config": inner}


def _lambda_config(inner, custom_objects):
    """A Lambda's config with its function (and output_shape / mask functions) found again: a
    named function registered with `register_keras_serializable` or given in `custom_objects`,
    saved by Keras 3 as {"class_name": "function", ...} or by Keras 2 as its plain name; a Python
    lambda saved as bytecode (Keras 3's "__lambda__", Keras 2's [code, defaults, closure]) only
    outside safe mode (`saving.func_load` says how to allow it)."""
    from ..saving import deserialize_keras_object, func_load, get_registered_object
    inner = dict(inner)
    name = inner.get("name")

    def resolve(key, value):
        if isinstance(value, str):
            from .. import activations
            fn = get_registered_object(value, custom_objects) or activations._BY_NAME.get(value)
            if fn is None:
                raise ValueError(f"Lambda layer '{name}': its {key} is the function '{value}', which is not "
                                 f"registered: pass custom_objects={{'{value}': {value}}} or decorate the function "
                                 "with @lamina.saving.register_keras_serializable()")
            return fn
        if isinstance(value, dict) and value.get("class_name") in ("function", "__lambda__"):
            try:
                return deserialize_keras_object(value, custom_objects=custom_objects)
            except ValueError as e:
                raise ValueError(f"Lambda layer '{name}', its {key}: {e}") from None
        if key == "function" and isinstance(value, (list, tuple)):   # Keras 2's marshalled lambda
            return func_load(value, what=f"the function of Lambda layer '{name}' (Keras 2 bytecode)")
        return value
    if "function" in inner:
        inner["function"] = resolve("function", inner["function"])
    if inner.get("output_shape") is not None and not (
            isinstance(inner["output_shape"], (list, tuple)) and
            all(d is None or isinstance(d, int) for d in inner["output_shape"])):
        inner["output_shape"] = resolve("output_shape", inner["output_shape"])
    if isinstance(inner.get("mask"), dict):
        inner["mask"] = resolve("mask", inner["mask"])
    if isinstance(inner.get("arguments"), dict):
        inner["arguments"] = deserialize_keras_object(inner["arguments"], custom_objects=custom_objects)
    return inner

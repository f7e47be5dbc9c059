"""Layers to configs and back, in Keras 3's form ({"module": "keras.layers", "class_name",
"config", "registered_name", "build_config"}), as `keras.layers.serialize` / `deserialize`.
Configs in the legacy {"class_name", "config"} form (Keras's .h5 files) are read too."""


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
    layer = deserialize_keras_object(config, custom_objects=custom_objects, printable_module_name="layer class")
    if not isinstance(layer, Layer):
        raise ValueError(f"The config of class '{config['class_name']}' does not describe a layer "
                         f"(it gave a {type(layer).__name__})")
    return layer

"""`keras.utils.legacy`: (de)serialization in the format of Keras 2 (tf.keras) configs,
`{"class_name": ..., "config": ...}` without Keras 3's "module" and "registered_name", and
functions by name, as Keras 3 still writes and reads it for legacy `.h5` files."""
import inspect

from . import saving


def serialize_keras_object(instance):
    """`instance` in the legacy format, as Keras's `keras.utils.legacy.serialize_keras_object`:
    an object with `get_config()` becomes `{"class_name": registered name, "config": ...}`, the
    objects in its config (not the dicts) serialized the same way and marked
    `"__passive_serialization__": True`; a function becomes its registered name; None stays None."""
    instance = inspect.unwrap(instance)
    if instance is None:
        return None
    if hasattr(instance, "get_config"):
        config = {}
        for key, item in instance.get_config().items():
            if isinstance(item, str):
                config[key] = item
                continue
            try:
                serialized = serialize_keras_object(item)
            except ValueError:   # plain values (numbers, lists, dicts) stay as they are
                config[key] = item
                continue
            if isinstance(serialized, dict) and not isinstance(item, dict):
                serialized["__passive_serialization__"] = True
            config[key] = serialized
        return {"class_name": saving.get_registered_name(type(instance)), "config": config}
    if hasattr(instance, "__name__"):
        return saving.get_registered_name(instance)
    raise ValueError(f"Cannot serialize {instance!r} because it doesn't implement `get_config()`.")


def deserialize_keras_object(identifier, module_objects=None, custom_objects=None, printable_module_name="object"):
    """The object a legacy config (or a name) describes, as Keras's
    `keras.utils.legacy.deserialize_keras_object`: classes and functions are looked up in
    `custom_objects`, the registered and scoped custom objects, `module_objects`, then, for
    configs, among lamina's own classes (Keras's legacy reader needs them in `module_objects`).
    A name alone gives the function, or an instance of the class made with no arguments."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        if "class_name" not in identifier or "config" not in identifier:
            raise ValueError(f"Improper config format for {printable_module_name}: {identifier}. Expecting python "
                             "dict contains `class_name` and `config` as keys")
        objects = {**(module_objects or {}), **(custom_objects or {})}
        return saving.deserialize_keras_object(identifier, custom_objects=objects,
                                               printable_module_name=printable_module_name)
    if isinstance(identifier, str):
        obj = saving.get_registered_object(identifier, custom_objects, module_objects)
        if obj is None:
            raise ValueError(f"Unknown {printable_module_name}: '{identifier}'. Please ensure you are using a "
                             "`lamina.utils.custom_object_scope` and that this object is included in the scope, or "
                             "pass it in `custom_objects` or `module_objects`.")
        return obj() if inspect.isclass(obj) else obj   # a class named alone is built with no arguments
    if inspect.isfunction(identifier):
        return identifier
    raise ValueError(f"Could not interpret serialized {printable_module_name}: {identifier!r}")

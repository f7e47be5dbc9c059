"""`lamina.saving`, as `keras.saving`: the custom-object registry, Keras's object serialization
({"module", "class_name", "config", "registered_name"}), and saving/loading whole models.

Configs are Keras 3's own: a lamina class that Keras also has is written under Keras's public
module ("keras.layers", "keras.initializers", ...), so Keras reads lamina's files and lamina
reads Keras's. A custom class is registered as "package>name" (`register_keras_serializable`)
and found again by that name, by its plain class name, or through `custom_objects`.

lamina's own classes that Keras does not have (`lamina.models.Seq2Seq`, registered as
"lamina>Seq2Seq") are written under their lamina module: lamina loads such a file back, Keras
cannot (it stops with "Could not locate class 'Seq2Seq'"). To move such a model to Keras, rebuild
the architecture with Keras's classes and move the weights.

Python lambdas are saved as Keras saves them (marshalled bytecode, "__lambda__") and loaded back
only outside safe mode: `load_model(..., safe_mode=False)` or after
`lamina.config.enable_unsafe_deserialization()` (see "saved code" below).

An object met twice while a '.keras' file is written carries Keras's "shared_object_id" and
loads back as one object (see "shared objects" below). Configs from Keras 2 files are read with
the conversions Keras 3's legacy loader applies; the Keras 2 keys Keras 3 refuses are refused
with an error that names them and says how to fix the file (`_KERAS2_KEYS`).

`KerasFileEditor` (saving_editor.py, imported on first use) inspects and edits the weights saved
in a '.keras' or '.weights.h5' file, so that an old file loads into a changed model.

This module imports nothing from lamina at import time but `_fileio` (which imports nothing from
lamina), so any module may use the registry."""
import base64
import builtins
import marshal
import threading
import types

import numpy as np

from ._fileio import FileFormatError  # noqa: F401  (raised by load_model / load_weights for a broken file)

_GLOBAL_CUSTOM_OBJECTS = {}   # "package>name" -> class or function
_GLOBAL_CUSTOM_NAMES = {}     # class or function -> "package>name"


class _Scope(threading.local):
    def __init__(self):
        self.custom_objects = {}


_scope = _Scope()


# ---- saved code: Python lambdas, loaded outside safe mode only -------------------------------------
# Keras writes a lambda as its marshalled bytecode (base64), defaults and closure values, and
# refuses to load one in safe mode (the default): running saved bytecode runs whatever the file
# holds. `load_model(..., safe_mode=False)`, or `enable_unsafe_deserialization()` for the whole
# process, allows it. Bytecode is specific to the Python version that wrote it.

_unsafe = {"enabled": False}      # enable_unsafe_deserialization(): every load may run saved code
_safe_scope = threading.local()   # the safe_mode of the load in progress on this thread


def enable_unsafe_deserialization():
    """Allows every later load in this process to rebuild Python lambdas from their saved bytecode
    (Keras's `keras.config.enable_unsafe_deserialization`). Load only files you trust."""
    _unsafe["enabled"] = True


def in_safe_mode():
    """Whether a lambda met now would be refused: False after enable_unsafe_deserialization() or
    inside a load with safe_mode=False, else True."""
    if _unsafe["enabled"]:
        return False
    return getattr(_safe_scope, "value", None) is not False


class SafeModeScope:
    """Within this block, loading refuses saved lambdas when `safe_mode` (Keras's SafeModeScope)."""

    def __init__(self, safe_mode=True):
        self.safe_mode = safe_mode

    def __enter__(self):
        self._saved = getattr(_safe_scope, "value", None)
        _safe_scope.value = self.safe_mode
        return self

    def __exit__(self, *exc):
        _safe_scope.value = self._saved


def func_dump(fn):
    """(base64 bytecode, defaults, closure values) of a Python function, as Keras writes them."""
    code = base64.encodebytes(marshal.dumps(fn.__code__)).decode("ascii")
    closure = tuple(c.cell_contents for c in fn.__closure__) if fn.__closure__ else None
    return code, fn.__defaults__, closure


def _cell(value):
    return (lambda: value).__closure__[0]


# What a loaded lambda's global names resolve to (the module that defined it is not saved): Keras
# gives its loaded lambdas a module's globals that hold nothing useful; these are the names Keras
# code calls lambdas with.
def _lambda_globals():
    import lamina
    return {"__builtins__": builtins, "keras": lamina, "lamina": lamina, "ops": lamina.ops, "layers": lamina.layers,
            "np": np, "numpy": np}


def func_load(code, defaults=None, closure=None, what="a lambda"):
    """The function `func_dump` saved (Keras's (code, defaults, closure) list form too). Raises
    ValueError in safe mode, naming how to allow it."""
    if in_safe_mode():
        raise ValueError(f"Requested the deserialization of {what} (a Python lambda, saved as its bytecode). This "
                         "carries a potential risk of arbitrary code execution and thus it is disallowed by default. "
                         "If you trust the source of the file, pass `safe_mode=False` to the loading function, or "
                         "call `lamina.config.enable_unsafe_deserialization()`.")
    if isinstance(code, (list, tuple)):
        code, defaults, closure = code
    try:
        raw = base64.decodebytes(code.encode("ascii"))
    except (UnicodeEncodeError, ValueError):
        raw = code.encode("raw_unicode_escape")
    try:
        compiled = marshal.loads(raw)
    except (ValueError, EOFError, TypeError) as e:
        raise ValueError(f"Could not load {what}: its saved bytecode is not readable by this Python ({e}); it was "
                         "probably written by another Python version. Rebuild that part of the model in code.") from None
    cells = tuple(_cell(v) for v in closure) if closure is not None else None
    fn = types.FunctionType(compiled, _lambda_globals(), compiled.co_name,
                            tuple(defaults) if defaults is not None else None, cells)
    fn._loaded_from_bytecode = True   # its module's global names are gone: Lambda says so on a NameError
    return fn


# ---- registry ---------------------------------------------------------------------------------

def register_keras_serializable(package="Custom", name=None):
    """Class/function decorator: saved configs name the object "package>name" and loading finds
    it again by that name (or by its plain name)."""
    def decorator(obj):
        registered = f"{package}>{name if name is not None else obj.__name__}"
        if isinstance(obj, type) and not hasattr(obj, "get_config"):
            raise ValueError(f"Cannot register {obj.__name__}: a class needs a get_config() method to be saved")
        _GLOBAL_CUSTOM_OBJECTS[registered] = obj
        _GLOBAL_CUSTOM_NAMES[obj] = registered
        return obj
    return decorator


def get_custom_objects():
    """The live global dict of registered objects ("package>name" -> object); entries added to it
    by hand (under any name) are found by loading too."""
    return _GLOBAL_CUSTOM_OBJECTS


def get_registered_name(obj):
    """"package>name" for a registered object, else its plain name."""
    return _GLOBAL_CUSTOM_NAMES.get(obj, getattr(obj, "__name__", type(obj).__name__))


def _lookup(name, table, module=None, suffix=True):
    """table[name]; with suffix=True a plain name also finds "package>name" (the first such
    entry whose object comes from `module`, when a module is given)."""
    if not name or not table:
        return None
    if name in table:
        return table[name]
    if suffix and ">" not in name:
        for key, obj in table.items():
            if key.endswith(">" + name) and (module is None or getattr(obj, "__module__", None) == module):
                return obj
    return None


def get_registered_object(name, custom_objects=None, module_objects=None):
    """The object registered (or in scope, or in `custom_objects`) under `name`, else None.
    `name` may be "package>name" or the plain name."""
    for table in (_scope.custom_objects, _GLOBAL_CUSTOM_OBJECTS, custom_objects or {}, module_objects or {}):
        obj = _lookup(name, table)
        if obj is not None:
            return obj
    return None


class CustomObjectScope:
    """`with custom_object_scope({"MyLayer": MyLayer}): ...` makes the objects visible to loading."""

    def __init__(self, custom_objects=None, *more):
        self.custom_objects = dict(custom_objects or {})
        for d in more:
            self.custom_objects.update(d or {})
        self._backup = None

    def __enter__(self):
        self._backup = dict(_scope.custom_objects)
        _scope.custom_objects = {**self._backup, **self.custom_objects}
        return self

    def __exit__(self, *exc):
        _scope.custom_objects = self._backup


custom_object_scope = CustomObjectScope


def _all_custom_objects(custom_objects=None):
    return {**_GLOBAL_CUSTOM_OBJECTS, **_scope.custom_objects, **(custom_objects or {})}


# ---- shared objects ("shared_object_id") ---------------------------------------------------------
#
# Keras 3 saves a '.keras' file inside an ObjectSharingScope: an object serialized a second time
# (one regularizer given to two layers, a layer that a wrapper also holds) gets
# "shared_object_id": id(obj) in its config, and the config written first gets it too when that
# dict is still part of the output (a config nested in a layer's get_config() is copied first, so
# there only the later occurrences carry the id, exactly as in Keras's files). Loading inside a
# scope gives back the object already made for an id. lamina writes the ids in '.keras' files
# (as Keras) and reads them from any config: every outermost `deserialize_keras_object` call
# opens a scope (Keras opens one for '.keras' files only; the legacy '.h5' configs of Keras 2 use
# the same key with the same meaning).

class _Sharing(threading.local):
    def __init__(self):
        self.id_to_obj = None       # loading: shared_object_id -> the object made for it
        self.id_to_config = None    # saving: id(obj) -> the first config written for it


_sharing = _Sharing()


class ObjectSharingScope:
    """Within this block, serializing marks objects met more than once with "shared_object_id",
    and deserializing returns one object per id (Keras's `ObjectSharingScope`)."""

    def __enter__(self):
        self._backup = (_sharing.id_to_obj, _sharing.id_to_config)
        _sharing.id_to_obj, _sharing.id_to_config = {}, {}
        return self

    def __exit__(self, *exc):
        _sharing.id_to_obj, _sharing.id_to_config = self._backup


def _record_serialized(obj, config):
    seen = _sharing.id_to_config
    if seen is None:
        return
    key = id(obj)
    if key not in seen:
        seen[key] = (obj, config)   # obj is kept alive so that its id is not reused while saving
    else:
        config["shared_object_id"] = key
        seen[key][1]["shared_object_id"] = key


def get_shared_object(config):
    """The object already deserialized for `config`'s "shared_object_id" in this scope, else None."""
    sid = config.get("shared_object_id") if isinstance(config, dict) else None
    if sid is None or _sharing.id_to_obj is None:
        return None
    return _sharing.id_to_obj.get(sid)


def record_shared_object(config, obj):
    """Remembers `obj` as the object of `config`'s "shared_object_id" (when it has one)."""
    sid = config.get("shared_object_id") if isinstance(config, dict) else None
    if sid is not None and _sharing.id_to_obj is not None:
        _sharing.id_to_obj[sid] = obj
    return obj


# ---- where lamina's classes live in Keras's namespace --------------------------------------------

_PACKAGE = __name__.rsplit(".", 1)[0]          # "lamina"
_KINDS = ("layers", "initializers", "regularizers", "constraints", "optimizers", "losses", "metrics")
_KERAS_MODULE = {"layers": "keras.layers", "initializers": "keras.initializers",
                 "regularizers": "keras.regularizers", "constraints": "keras.constraints",
                 "optimizers": "keras.optimizers", "losses": "keras.losses", "metrics": "keras.metrics",
                 "schedules": "keras.optimizers.schedules"}


def _namespaces():
    import importlib
    out = {k: importlib.import_module(f"{_PACKAGE}.{k}") for k in _KINDS}
    out["schedules"] = importlib.import_module(f"{_PACKAGE}.optimizers.schedules")
    return out


def _model_classes():
    from .models.model import Functional, Model
    from .models.sequential import Sequential
    return {"Functional": Functional, "Model": Model, "Sequential": Sequential}


def _public_home(cls):
    """(keras module, registered_name) for a lamina class Keras also exports, else None."""
    if not cls.__module__.startswith(_PACKAGE + "."):
        return None
    models = _model_classes()
    if cls is models["Functional"]:
        return "keras.src.models.functional", "Functional"
    if cls is models["Sequential"] or cls is models["Model"]:
        return "keras", None
    for kind, mod in _namespaces().items():
        if getattr(mod, cls.__name__, None) is cls:
            return _KERAS_MODULE[kind], None
    if getattr(_utils(), cls.__name__, None) is cls:   # keras.utils.FeatureSpace
        return "keras.utils", None
    if cls.__module__ == f"{_PACKAGE}._feature_space" and cls.__name__ in ("Feature", "Cross"):
        return _FEATURE_SPACE_MODULE, cls.__name__   # as Keras writes its FeatureSpace's parts
    return None


_FEATURE_SPACE_MODULE = "keras.src.layers.preprocessing.feature_space"


def _utils():
    import importlib
    return importlib.import_module(f"{_PACKAGE}.utils")


def _find_class(class_name, module):
    """The lamina class Keras's (module, class_name) names, or None."""
    spaces = _namespaces()
    kind = None
    if module == _FEATURE_SPACE_MODULE and class_name in ("Feature", "Cross"):
        import importlib
        return getattr(importlib.import_module(f"{_PACKAGE}._feature_space"), class_name)
    if module:
        parts = module.split(".")
        if parts[0] not in ("keras", _PACKAGE):
            return None      # another package's class: only custom objects can stand for it
        kind = next((k for k in ("schedules",) + _KINDS if k in parts[1:]), None)
        if kind is None and ("models" in parts or len(parts) == 1):
            kind = "models"
        if kind is None and "utils" in parts[1:]:     # keras.utils.FeatureSpace
            obj = getattr(_utils(), class_name, None)
            return obj if isinstance(obj, type) else None
        if kind is None:
            return None      # e.g. Keras's ops ("keras.src.ops.numpy"): no lamina class stands for them
    if kind == "models" or kind is None:
        cls = _model_classes().get(class_name)
        if cls is not None:
            return cls
    order = [kind] if kind not in (None, "models") else list(spaces)
    for k in order:
        obj = getattr(spaces[k], class_name, None)
        if isinstance(obj, type):
            return obj
        table = getattr(spaces[k], "_CLASSES", None) or getattr(spaces[k], "_ALIASES", None) or {}
        if isinstance(table.get(class_name), type):
            return table[class_name]
    return None


# ---- serialization --------------------------------------------------------------------------------

def dtype_policy_config(name):
    """Keras's serialized DTypePolicy, as layer configs carry it."""
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def serialize_keras_object(obj):
    """A JSON-ready description of `obj`, in Keras 3's form: plain values as they are; objects as
    {"module", "class_name", "config", "registered_name"} (+ "build_config" / "compile_config")."""
    from .backend.tensor import Tensor
    from .layers.input_layer import KerasTensor
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        out = [serialize_keras_object(v) for v in obj]
        return tuple(out) if isinstance(obj, tuple) else out
    if isinstance(obj, dict):
        return {k: serialize_keras_object(v) for k, v in obj.items()}
    if isinstance(obj, bytes):
        return {"class_name": "__bytes__", "config": {"value": obj.decode("utf-8")}}
    if isinstance(obj, slice):   # keys of x[...] on symbolic tensors, as Keras writes them
        return {"class_name": "__slice__", "config": {"start": serialize_keras_object(obj.start),
                                                      "stop": serialize_keras_object(obj.stop),
                                                      "step": serialize_keras_object(obj.step)}}
    if obj is Ellipsis:
        return {"class_name": "__ellipsis__", "config": {}}
    if isinstance(obj, KerasTensor):
        history = list(obj._keras_history) if obj._keras_history else None
        if history:
            history[0] = history[0].name
        return {"class_name": "__keras_tensor__",
                "config": {"shape": obj.shape, "dtype": obj.dtype, "keras_history": history}}
    if isinstance(obj, Tensor):
        a = obj.numpy()
        return {"class_name": "__tensor__", "config": {"value": a.tolist(), "dtype": str(a.dtype)}}
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return obj.item()
        return {"class_name": "__numpy__", "config": {"value": obj.tolist(), "dtype": str(obj.dtype)}}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, types.FunctionType) and obj.__name__ == "<lambda>":   # its bytecode, as Keras
        return {"class_name": "__lambda__", "config": {"value": func_dump(obj)}}
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        from . import activations
        if obj in _GLOBAL_CUSTOM_NAMES or activations._BY_NAME.get(obj.__name__) is not obj:
            name = get_registered_name(obj)
            module = None if obj.__module__ == "__main__" else obj.__module__
            return {"module": module, "class_name": "function", "config": name, "registered_name": name}
        return {"module": "keras.activations", "class_name": "function", "config": obj.__name__,
                "registered_name": obj.__name__}
    if not hasattr(obj, "get_config"):
        raise TypeError(f"Cannot serialize {obj!r} ({type(obj).__name__}): a class needs a get_config() method")
    config = obj.get_config()
    if not isinstance(config, dict):
        raise TypeError(f"{type(obj).__name__}.get_config() must return a dict, it returned {config!r}")
    keras_class = getattr(obj, "_keras_class", None)
    if keras_class is not None:   # an op node of a functional model, written as Keras's Operation
        module, name = keras_class()
        out = {"module": module, "class_name": name, "config": serialize_keras_object(config), "registered_name": name}
        _record_serialized(obj, out)
        return out
    cls = type(obj)
    home = None if cls in _GLOBAL_CUSTOM_NAMES else _public_home(cls)
    if home is not None:
        module, registered = home
    else:
        module = None if cls.__module__ == "__main__" else cls.__module__
        registered = get_registered_name(cls)
    # a class Keras exports under another name than its own (GroupedQueryAttention -> GroupQueryAttention)
    # is written under the exported one, the only name Keras resolves
    name = cls.__dict__.get("_keras_export_name", cls.__name__) if home is not None else cls.__name__
    out = {"module": module, "class_name": name, "config": serialize_keras_object(config),
           "registered_name": registered}
    build = getattr(obj, "get_build_config", None)
    build_config = build() if build is not None else None
    if build_config is not None:
        out["build_config"] = serialize_keras_object(build_config)
    compile_cfg = getattr(obj, "get_compile_config", None)
    compile_config = compile_cfg() if compile_cfg is not None else None
    if compile_config is not None:
        out["compile_config"] = serialize_keras_object(compile_config)
    _record_serialized(obj, out)
    return out


class _SavedTensor:
    """A KerasTensor as a node config names it: (layer name, node index, tensor index)."""

    def __init__(self, history):
        self.history = history


def retrieve_class(class_name, registered_name=None, module=None, custom_objects=None, what="class"):
    """The class (or function) a config names: custom objects first (by registered name, then by
    plain name), then lamina's own by Keras's module and name. Raises ValueError naming it."""
    table = _all_custom_objects(custom_objects)
    for key in (registered_name, class_name, class_name.split(">")[-1]):
        obj = _lookup(key, table, suffix=False)
        if obj is not None:
            return obj
    # a file that names a plain class (lamina's earlier files, Keras's legacy ones) finds it
    # registered as "package>name", if it is the class of the module the file names
    plain_module = module if module and module.split(".")[0] not in ("keras", _PACKAGE) else None
    obj = _lookup(class_name, table, module=plain_module)
    if obj is not None:
        return obj
    obj = _find_class(class_name, module)
    if obj is not None:
        return obj
    where = f" (module '{module}')" if module else ""
    raise ValueError(f"Unknown {what} '{class_name}'{where}: lamina has no {what} of that name. If it is a "
                     f"custom {what}, pass custom_objects={{'{class_name}': {class_name}}} or decorate it with "
                     "@lamina.saving.register_keras_serializable()")


def deserialize_keras_object(config, custom_objects=None, safe_mode=True, printable_module_name="class", **kwargs):
    """The object a Keras-form config describes (the inverse of `serialize_keras_object`).
    `safe_mode` (outside a load, which sets its own) refuses saved lambdas.
    Configs without "module" (Keras's legacy .h5 form) are read too. Configs that carry the same
    "shared_object_id" give one object (the outermost call keeps the objects made for the ids)."""
    if getattr(_safe_scope, "value", None) is None:   # no load in progress: this call's safe_mode holds
        with SafeModeScope(safe_mode is not False):
            return deserialize_keras_object(config, custom_objects, safe_mode, printable_module_name)
    if _sharing.id_to_obj is not None:
        return _deserialize(config, custom_objects, safe_mode, printable_module_name)
    _sharing.id_to_obj = {}
    try:
        return _deserialize(config, custom_objects, safe_mode, printable_module_name)
    finally:
        _sharing.id_to_obj = None


def _deserialize(config, custom_objects=None, safe_mode=True, printable_module_name="class"):
    if config is None or isinstance(config, (int, float, bool)):
        return config
    if isinstance(config, str):
        obj = get_registered_object(config, custom_objects)
        return obj if obj is not None else config
    if isinstance(config, (list, tuple)):
        return [_deserialize(v, custom_objects, safe_mode) for v in config]
    if not isinstance(config, dict):
        raise TypeError(f"Could not parse config {config!r}")
    if "class_name" not in config or "config" not in config:
        return {k: _deserialize(v, custom_objects, safe_mode) for k, v in config.items()}
    class_name, inner = config["class_name"], config["config"] if config["config"] is not None else {}
    if class_name == "__keras_tensor__":
        return _SavedTensor(inner.get("keras_history"))
    if class_name in ("__tensor__", "__numpy__"):
        return np.array(inner["value"], dtype=inner.get("dtype"))
    if class_name == "__bytes__":
        return inner["value"].encode("utf-8")
    if class_name == "__slice__":
        return slice(*(_deserialize(inner.get(k), custom_objects, safe_mode) for k in ("start", "stop", "step")))
    if class_name == "__ellipsis__":
        return Ellipsis
    if class_name == "__lambda__":
        if "value" in inner:
            return func_load(inner["value"])
        return func_load(inner.get("code"), inner.get("defaults"), inner.get("closure"))
    module, registered = config.get("module"), config.get("registered_name")
    if class_name == "function":
        from . import activations
        fn = get_registered_object(registered or inner, custom_objects) or get_registered_object(inner, custom_objects)
        if fn is None:
            fn = activations._BY_NAME.get(inner)
        if fn is None:
            raise ValueError(f"Unknown function '{inner}'{f' (module {module!r})' if module else ''}: register it "
                             "with @lamina.saving.register_keras_serializable() or pass it in custom_objects")
        return fn
    shared = get_shared_object(config)
    if shared is not None:
        return shared
    cls = retrieve_class(class_name, registered, module, custom_objects, what=printable_module_name)
    if not hasattr(cls, "from_config"):
        raise TypeError(f"'{class_name}' has no from_config(): it cannot be rebuilt from its config")
    with CustomObjectScope(custom_objects):
        try:
            instance = _from_config(cls, inner, custom_objects)
        except TypeError as e:
            if "unrecognized keyword argument" not in str(e) and "unexpected keyword argument" not in str(e):
                raise
            name = inner.get("name") if isinstance(inner, dict) else None
            where = f"{class_name}{f' {name!r}' if name else ''}"
            hint = _keras2_hint(inner, str(e), _KERAS2_LAYER_KEYS)
            if hint:
                raise ValueError(f"{where}: the config has {hint}") from None
            raise ValueError(f"{where}: the config has an option lamina's {class_name} does not implement ({e}). "
                             "Remove it, or rebuild that part of the model in code.") from None
        build_config = config.get("build_config")
        if build_config and hasattr(instance, "build_from_config") and not getattr(instance, "built", True):
            instance.build_from_config(build_config)
        compile_config = config.get("compile_config")
        if compile_config and hasattr(instance, "compile_from_config"):
            instance.compile_from_config(compile_config)
    return record_shared_object(config, instance)


def get_small_object(identifier, by_name, what, expected):
    """The `get` of the initializer/regularizer/constraint modules after the instance and
    callable cases: `identifier` is a name (built-in in `by_name`, else registered) or a config
    dict (Keras's form with "module"/"registered_name", or {"class_name", "config"})."""
    if isinstance(identifier, str):
        if identifier in by_name:
            return by_name[identifier]()
        obj = get_registered_object(identifier)
        if obj is not None:
            return obj() if isinstance(obj, type) else obj
        raise ValueError(f"Unknown {what} {identifier!r}; expected {expected}")
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        registered = identifier.get("registered_name")  # a registered class wins over a built-in of its name
        cls = (get_registered_object(registered) if registered else None) or by_name.get(name) or \
            get_registered_object(name)
        if cls is None:
            raise ValueError(f"Unknown {what} class {name!r}; register a custom one with "
                             "@lamina.saving.register_keras_serializable()")
        shared = get_shared_object(identifier)   # one object given to several layers when saved
        if shared is not None:
            return shared
        return record_shared_object(identifier, from_config_checked(cls, identifier.get("config") or {}, what))
    raise TypeError(f"Could not interpret {what} {identifier!r}: expected None, a name, an instance or a callable")


def deserialize_from_table(config, classes, get, function_from_config, what, custom_objects=None):
    """The `deserialize` of the losses and metrics modules: a name goes through `get`; a config
    dict is a function ({"class_name": "function"}) or a class, built-in (`classes`) or custom."""
    if isinstance(config, str):
        return get(config)
    if isinstance(config, dict) and config.get("class_name") == "function":
        return function_from_config(config)
    if isinstance(config, dict):
        cls = classes.get(config.get("class_name"))
        if cls is None:
            cls = retrieve_class(config.get("class_name"), config.get("registered_name"), config.get("module"),
                                 custom_objects, what=what)
        return cls.from_config(config.get("config") or {})
    raise TypeError(f"Could not deserialize {what} {config!r}: expected a name or a config dict")


def from_config_checked(cls, config, what):
    """cls.from_config(config) for a small object (initializer, regularizer, constraint); a key
    the class does not take is named in a ValueError."""
    try:
        return cls.from_config(dict(config))
    except TypeError as e:
        hint = _keras2_hint(config, str(e), _KERAS2_SMALL_OBJECT_KEYS)
        if hint:
            raise ValueError(f"{what} {cls.__name__}: the saved config {config} has {hint}") from None
        raise ValueError(f"{what} {cls.__name__}: cannot use the saved config {config}: {e}. The key is an option "
                         f"lamina's {cls.__name__} does not implement.") from None


# Keys that Keras 2 (tf.keras) wrote into configs and that Keras 3 refuses when it loads such a
# file (its legacy loader converts only `axis` lists, `batch_input_shape`, `input_dim`,
# `input_length`, LeakyReLU's `alpha`, the recurrent layers' `implementation`, an optimizer's
# `decay` and the "Custom>" optimizer names of tf.keras 2.11+): lamina refuses them too, saying why.
_KERAS2_KEYS = {
    "time_major": "the time-major input layout of Keras 2's recurrent layers, which Keras 3 removed. A config "
                  "with time_major=False (Keras 2's default) computes what lamina's layer computes: delete the "
                  "key from the saved config",
    "groups": "tf.keras 2.x wrote groups=1 into the configs of layers that take no `groups` (DepthwiseConv2D, "
              "Conv2DTranspose). groups=1 is what the layer computes: delete the key from the saved config",
    "causal": "Keras 2's Attention(causal=...). Keras 3 and lamina take `use_causal_mask=True` when the layer is "
              "called instead: delete the key from the saved config and pass use_causal_mask in the call",
    "fused": "Keras 2's choice of a fused BatchNormalization kernel; delete the key from the saved config",
    "dtype": "TensorFlow 1.x wrote `dtype` into initializer configs; delete the key from the saved config",
    "lr": "Keras 2.2's name for `learning_rate`; rename the key to learning_rate in the saved config",
    "is_legacy_optimizer": "tf.keras 2.11+ wrote it into optimizer configs; delete the key from the saved config",
    "jit_compile": "tf.keras 2.11+ wrote it into optimizer configs; delete the key from the saved config",
}


_KERAS2_LAYER_KEYS = ("time_major", "groups", "causal", "fused")
_KERAS2_SMALL_OBJECT_KEYS = ("dtype",)
_KERAS2_OPTIMIZER_KEYS = ("lr", "is_legacy_optimizer", "jit_compile")


def _keras2_hint(config, message, keys):
    """"Keras 2's option 'k', which Keras 3 refuses as well: <why, and the fix>." for the Keras 2
    `keys` of `config` that the error `message` names; "" when it names none."""
    if not isinstance(config, dict):
        return ""
    keys = [k for k in keys if k in config and (repr(k) in message or f"argument '{k}'" in message)]
    return " ".join(f"Keras 2's option {k!r} ({k}={config[k]!r}), which Keras 3 refuses as well: {_KERAS2_KEYS[k]}."
                    for k in keys)


def _from_config(cls, config, custom_objects):
    import inspect
    try:
        params = inspect.signature(cls.from_config).parameters
    except (TypeError, ValueError):
        params = {}
    if "custom_objects" in params:
        return cls.from_config(config, custom_objects=custom_objects)
    return cls.from_config(config)


# ---- whole models ---------------------------------------------------------------------------------

def save_model(model, filepath, overwrite=True, **kwargs):
    """Saves `model` to a '.keras' zip (Keras 3's format) or a legacy '.h5' file, atomically.
    Keras loads the file when every class in it is one Keras has or a custom class registered on
    both sides; a model using a lamina-only class (e.g. Seq2Seq) loads in lamina only."""
    from .models.io import save_model as _save
    _save(model, filepath, overwrite=overwrite, **kwargs)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model saved by lamina or by Keras ('.keras' or '.h5')."""
    from .models.io import load_model as _load
    return _load(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def save_weights(model, filepath, overwrite=True, max_shard_size=None, **kwargs):
    if kwargs:
        raise TypeError(f"save_weights: unexpected keyword argument(s) {sorted(kwargs)}")
    model.save_weights(filepath, overwrite=overwrite, max_shard_size=max_shard_size)


def load_weights(model, filepath, skip_mismatch=False, **kwargs):
    model.load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)


# ---- editing saved files --------------------------------------------------------------------------
# KerasFileEditor lives in saving_editor.py (it needs h5py and lamina's model code); it is
# imported on first use, so that this module still imports nothing from lamina but `_fileio`.

_LAZY = {"KerasFileEditor": "saving_editor"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f"{_PACKAGE}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

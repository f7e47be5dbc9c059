"""Model configs in Keras 3's form, so that Keras reads lamina's and lamina reads Keras's:

- a Functional model: {"name", "trainable", "layers": [serialized layer + "name" + "inbound_nodes"],
  "input_layers", "output_layers"}; a node is {"args", "kwargs"} with each input as Keras's
  {"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history": [layer,
  node index, tensor index]}}, node indices counting only the nodes inside the model;
- a Sequential model: {"name", "trainable", "dtype", "layers", "build_input_shape"}.

Inside `legacy_config()` (Keras's '.h5' files) a layer entry is {"class_name", "config"} only.
Reading also accepts Keras 2's node lists ([[name, node, tensor, kwargs], ...]) and lamina's
earlier {"__keras_tensor__": [...]} references."""
import contextlib
import threading

from ..layers.serialization import deserialize as _deserialize, serialize as _serialize


class _Mode(threading.local):
    legacy = False


_mode = _Mode()


@contextlib.contextmanager
def legacy_config():
    """Within this block model configs use Keras's legacy (.h5) layer entries."""
    prev, _mode.legacy = _mode.legacy, True
    try:
        yield
    finally:
        _mode.legacy = prev


def register(cls, name=None):
    """Registers a lamina class that Keras does not have under "lamina>Name"."""
    from ..saving import register_keras_serializable
    return register_keras_serializable("lamina", name)(cls)


def serialize_layer(layer):
    """A layer entry of a model config: Keras's serialized form (the legacy form in legacy_config())."""
    cfg = _serialize(layer)
    if not _mode.legacy:
        return cfg
    name = cfg["registered_name"] if cfg.get("registered_name") and "module" in cfg and \
        not (cfg.get("module") or "").startswith("keras") else cfg["class_name"]
    return {"class_name": name, "config": cfg["config"]}


def deserialize_layer(config, custom_objects=None):
    return _deserialize(config, custom_objects)


# ---- Functional ------------------------------------------------------------------------------------

def functional_config(model):
    from .model import Functional
    own = {id(n) for n in model._nodes}

    def tensor_ref(t, io=False):
        """[layer, node, tensor] as Keras writes it: nodes outside this model are not counted; in
        input_layers / output_layers a nested Functional model's nodes count from 1."""
        layer, index, ti = t._keras_history
        kept = sum(1 for n in layer._inbound_nodes[:index] if id(n) in own)
        return [layer.name, kept + (1 if io and isinstance(layer, Functional) else 0), ti]

    def encode(x):
        from ..layers.input_layer import KerasTensor
        if isinstance(x, KerasTensor):
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": list(x.shape), "dtype": x.dtype, "keras_history": tensor_ref(x)}}
        if isinstance(x, dict):
            return {k: encode(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [encode(v) for v in x]
        from ..saving import serialize_keras_object
        return serialize_keras_object(x)

    layers = []
    for layer in model.operations:   # the ops called on symbolic tensors too, as Keras writes them
        nodes = []
        for node in layer._inbound_nodes:
            if id(node) not in own or not node.inputs:
                continue
            # an op node is saved with its call's arguments, as Keras's Operation (layers/core.py)
            args, kwargs = layer._keras_call_args() if hasattr(layer, "_keras_call_args") else node.call_args
            nodes.append({"args": encode(list(args)), "kwargs": encode(dict(kwargs))})
        entry = serialize_layer(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = nodes
        layers.append(entry)

    def struct(s):
        if isinstance(s, dict):
            return {k: struct(v) for k, v in s.items()}
        if isinstance(s, (list, tuple)):
            return [struct(v) for v in s]
        return tensor_ref(s, io=True)
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": struct(model._inputs_struct), "output_layers": struct(model._outputs_struct)}


def functional_from_config(config, custom_objects=None, cls=None):
    """Rebuilds a Functional model: creates the layers, then calls each on its inbound nodes'
    inputs in file order until every node exists (a shared layer's later nodes may wait)."""
    from ..saving import _SavedTensor
    from .model import Functional
    cls = cls or Functional
    for key in ("layers", "input_layers", "output_layers"):
        if key not in config:
            raise ValueError(f"A Functional model config needs '{key}'; the config has keys {sorted(config)}")
    _check_keys(config, ("name", "trainable", "layers", "input_layers", "output_layers"), "Functional")
    created, order = {}, []
    for entry in config["layers"]:
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        layer = deserialize_layer(entry, custom_objects)
        created[name] = layer
        order.append((name, list(entry.get("inbound_nodes") or [])))

    def tensor_of(history, io=False):
        """The tensor a [layer, node, tensor] reference names (in input_layers / output_layers a
        nested Functional model's nodes count from 1, as Keras writes them)."""
        name, index, ti = history[0], history[1], history[2]
        if name not in created:
            raise ValueError(f"The model config refers to layer '{name}', which is not among its layers")
        layer = created[name]
        if io and isinstance(layer, Functional):
            index -= 1
        if index >= len(layer._inbound_nodes):
            raise LookupError(name)
        return layer._inbound_nodes[index].outputs[ti]

    def decode(x):
        if isinstance(x, _SavedTensor):
            return tensor_of(x.history)
        if isinstance(x, dict) and "__keras_tensor__" in x and len(x) == 1:   # lamina's earlier form
            return tensor_of(x["__keras_tensor__"])
        if isinstance(x, dict):
            return {k: decode(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [decode(v) for v in x]
        return x

    def call_args(node):
        from ..saving import deserialize_keras_object
        if isinstance(node, list):   # Keras 2: [[layer, node, tensor, kwargs], ...]
            inputs = [tensor_of(ref) for ref in node]
            kwargs = dict(next((ref[3] for ref in node if len(ref) > 3 and ref[3]), {}))
            args = [inputs[0] if len(inputs) == 1 else inputs]
        else:
            args = decode(deserialize_keras_object(node.get("args", []), custom_objects))
            kwargs = decode(deserialize_keras_object(node.get("kwargs", {}), custom_objects))
        # Keras records the training flag of each call and overrides it with the flag of the
        # model's own call; lamina's replay passes the model's flag down itself, so it is not kept.
        kwargs.pop("training", None)
        return args, kwargs

    pending = dict((name, nodes) for name, nodes in order if nodes)
    while pending:
        progress = False
        for name, _ in order:
            nodes = pending.get(name)
            while nodes:
                try:
                    args, kwargs = call_args(nodes[0])
                except LookupError:
                    break
                created[name](*args, **kwargs)
                nodes.pop(0)
                progress = True
            if name in pending and not nodes:
                del pending[name]
        if not progress:
            raise ValueError(f"Could not rebuild the functional graph: layers {sorted(pending)} have inputs that "
                             "are never produced (the config has a cycle or a missing layer)")

    def struct(s):
        if isinstance(s, dict):
            return {k: struct(v) for k, v in s.items()}
        if isinstance(s, (list, tuple)) and len(s) in (3, 4) and isinstance(s[0], str):
            return tensor_of(s, io=True)
        return [struct(v) for v in s]
    inputs, outputs = struct(config["input_layers"]), struct(config["output_layers"])
    return cls(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))


def _check_keys(config, known, who):
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"{who} model config: unrecognized key(s) {unknown} (lamina reads {list(known)}); the file "
                         "may come from a newer Keras with options lamina does not implement")


# ---- Sequential ------------------------------------------------------------------------------------

def sequential_config(model):
    from ..layers.input_layer import InputLayer
    from ..saving import dtype_policy_config
    layers = []
    stack = model._stack
    if stack and isinstance(stack[0], InputLayer):
        layers.append(serialize_layer(stack[0]))
    elif model._input_kt is not None and model._input_kt._keras_history is not None:
        layers.append(serialize_layer(model._input_kt._keras_history[0]))   # the InputLayer build() made
    layers += [serialize_layer(l) for l in model.layers]
    config = {"name": model.name, "trainable": model.trainable, "dtype": dtype_policy_config(model.dtype_policy.name),
              "layers": layers}
    if model.built and model._input_kt is not None:
        config["build_input_shape"] = tuple(model._input_kt.shape)
    return config


def sequential_from_config(cls, config, custom_objects=None):
    from ..layers.layer import layer_dtype
    if "layers" not in config:
        raise ValueError(f"A Sequential model config needs 'layers'; the config has keys {sorted(config)}")
    _check_keys(config, ("name", "trainable", "dtype", "layers", "build_input_shape"), "Sequential")
    layer_dtype(config.get("dtype"), f"Sequential '{config.get('name')}'")   # refuses policies lamina lacks
    model = cls(name=config.get("name"), trainable=config.get("trainable", True))
    for entry in config["layers"]:
        model.add(deserialize_layer(entry, custom_objects), rebuild=False)
    model._maybe_build_from_known_shape()
    shape = config.get("build_input_shape")
    if not model.built and isinstance(shape, (list, tuple)) and shape:
        model.build(tuple(shape))
    return model


# ---- compile config ---------------------------------------------------------------------------------

def compile_config(model):
    """Keras's compile config of a compiled model (None otherwise): {"optimizer", "loss",
    "loss_weights", "metrics", "weighted_metrics", "run_eagerly", "steps_per_execution",
    "jit_compile"}. In legacy_config() it is Keras's '.h5' training_config: objects as
    {"class_name", "config"} and the optimizer under "optimizer_config"."""
    if not getattr(model, "compiled", False):
        return None
    from .. import losses
    from ..saving import serialize_keras_object
    c = model._compiled

    def obj(o):
        cfg = serialize_keras_object(o)
        return {"class_name": cfg["class_name"], "config": cfg["config"]} if _mode.legacy else cfg

    def loss(v):
        if isinstance(v, (list, tuple)):
            return [loss(x) for x in v]
        if isinstance(v, dict):
            return {k: loss(x) for k, x in v.items()}
        if isinstance(v, str) and _mode.legacy and v in losses._BY_NAME:
            # Keras 3 cannot read an alias such as "mse" back from a legacy '.h5' training_config
            # (it looks it up among the metrics); the function's own name reads back everywhere
            return losses._BY_NAME[v].__name__
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, losses.Loss):
            return obj(v)
        name = losses.serialize(v)
        if name is None:
            raise ValueError(f"Cannot save the loss {v!r}: use a built-in loss name, a lamina.losses.Loss, or a "
                             "function registered with @lamina.saving.register_keras_serializable()")
        return name

    def metric(m):
        if isinstance(m, (list, tuple)):
            return [metric(x) for x in m]
        if isinstance(m, dict):
            return {k: metric(x) for k, x in m.items()}
        if m is None or isinstance(m, str):
            return m
        if hasattr(m, "get_config"):
            return obj(m)
        return getattr(m, "__name__", None)
    config = {"loss": loss(c.loss), "loss_weights": c.loss_weights, "metrics": metric(c.metrics_spec),
              "weighted_metrics": metric(c.weighted_spec), "run_eagerly": bool(model.run_eagerly),
              "steps_per_execution": model.steps_per_execution,
              "jit_compile": False}
    if _mode.legacy:
        return {**config, "optimizer_config": obj(model.optimizer)}
    return {"optimizer": obj(model.optimizer), **config}


def compile_from_config(model, config):
    """Compiles `model` as a compile config (Keras's or the legacy training_config) says. A loss,
    metric or optimizer lamina lacks is named in a ValueError (load with compile=False to skip)."""
    from .. import losses, metrics as metrics_module, optimizers
    from ..saving import retrieve_class
    opt_cfg = _keras2_optimizer_config(config.get("optimizer", config.get("optimizer_config")))
    try:
        if isinstance(opt_cfg, dict) and opt_cfg.get("class_name") not in optimizers._CLASSES:
            cls = retrieve_class(opt_cfg["class_name"], opt_cfg.get("registered_name"), None, what="optimizer")
            optimizer = cls.from_config(opt_cfg.get("config") or {})
        else:
            optimizer = optimizers.get(opt_cfg if opt_cfg is not None else "rmsprop")
    except TypeError as e:
        from ..saving import _KERAS2_OPTIMIZER_KEYS, _keras2_hint
        hint = _keras2_hint(opt_cfg.get("config"), str(e), _KERAS2_OPTIMIZER_KEYS) if isinstance(opt_cfg, dict) \
            else ""
        if not hint:
            raise
        raise TypeError(f"optimizer {opt_cfg.get('class_name')}: the saved config has {hint.rstrip('.')}") from None

    def loss(v):
        if isinstance(v, list):
            return [loss(x) for x in v]
        if isinstance(v, dict) and "class_name" not in v:
            return {k: loss(x) for k, x in v.items()}
        if isinstance(v, dict) and isinstance(v.get("config"), dict) and v["config"].get("reduction") == "auto":
            raise ValueError(f"The loss {v['class_name']} has reduction='auto', Keras 2's default, which Keras 3 "
                             "refuses as well (Keras 3's reductions are 'sum_over_batch_size', 'sum', 'mean', "
                             "'mean_with_sample_weight' and 'none'; 'auto' meant 'sum_over_batch_size')")
        if isinstance(v, dict) and v["class_name"] not in losses._CLASSES:
            cls = retrieve_class(v["class_name"], v.get("registered_name"), None, what="loss")
            return cls.from_config(v.get("config") or {})
        if isinstance(v, str) and v not in losses._BY_NAME and v not in losses._CLASSES:
            from ..saving import get_registered_object
            fn = get_registered_object(v)
            if fn is None:
                raise ValueError(f"Unknown loss {v!r} in the compile config: lamina has no such loss. Load with "
                                 "compile=False and compile the model yourself")
            return fn
        return losses.get(v) if v is not None else None

    def metric(m):
        if isinstance(m, list):
            return [metric(x) for x in m]
        if isinstance(m, dict) and "class_name" not in m:
            return {k: metric(x) for k, x in m.items()}
        if isinstance(m, dict):
            name = m["class_name"]
            if name == "function":
                from ..saving import deserialize_keras_object
                return deserialize_keras_object(m)
            cls = getattr(metrics_module, name, None)
            if not isinstance(cls, type):
                cls = retrieve_class(name, m.get("registered_name"), None, what="metric")
            return cls.from_config(m.get("config") or {})
        return m

    def per_output(m):
        # Keras 2 wrote the metrics of a one-output model as one list per output ([["accuracy"]]),
        # which Keras 3's compile takes as the model's metrics
        if isinstance(m, list) and len(m) == 1 and isinstance(m[0], list) and \
                len(getattr(model, "outputs", None) or ()) <= 1:
            return m[0]
        return m
    extra = {k: config[k] for k in ("run_eagerly", "steps_per_execution", "jit_compile") if k in config}
    model.compile(optimizer=optimizer, loss=loss(config.get("loss")), loss_weights=config.get("loss_weights"),
                  metrics=per_output(metric(config.get("metrics"))),
                  weighted_metrics=per_output(metric(config.get("weighted_metrics"))), **extra)


def _keras2_optimizer_config(config):
    """An optimizer config of a Keras 2 file, converted as Keras 3 loads it: tf.keras 2.11-2.15
    named the built-in optimizers "Custom>Adam", "Custom>SGD"... (Keras 3 reads them as its own
    Adam, SGD...) and wrote TensorFlow-only keys into their configs (`jit_compile`,
    `is_legacy_optimizer`, dropped here); Keras 2's `decay` is dropped with a warning, as Keras 3
    does (Keras 3's optimizers have no such argument; a schedule gives the same decay). lamina
    keeps the saved hyperparameters where Keras 3 falls back to the defaults for a "Custom>" name.
    Any other Keras 2 key (`lr`, ...) is refused by the optimizer, as by Keras 3."""
    import warnings
    from .. import optimizers
    from ..saving import get_registered_object
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        return config
    name, inner = config.get("class_name"), dict(config["config"])
    if isinstance(name, str) and name.startswith("Custom>") and get_registered_object(name) is None \
            and name[len("Custom>"):] in optimizers._CLASSES:
        name = name[len("Custom>"):]
        inner.pop("jit_compile", None)
        inner.pop("is_legacy_optimizer", None)
    decay = inner.pop("decay", None)
    if decay:
        warnings.warn(f"The saved {name} optimizer has Keras 2's decay={decay} (learning rate / (1 + decay * "
                      "iterations)); Keras 3's optimizers have no `decay` and Keras 3 ignores it, and so does "
                      "lamina. Compile with learning_rate=<a schedule> to keep decaying the learning rate.",
                      stacklevel=3)
    return {**config, "class_name": name, "config": inner}


def model_from_json(json_string, custom_objects=None):
    """A model from `model.to_json()` (lamina's or Keras's), with new weights."""
    import json
    from ..saving import deserialize_keras_object
    from .io import _tuplify
    try:
        config = json.loads(json_string)
    except ValueError as e:
        raise ValueError(f"model_from_json: the string is not valid JSON: {e}") from None
    return deserialize_keras_object(_tuplify(config), custom_objects=custom_objects)

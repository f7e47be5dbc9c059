"""Model and layer configs: serialising layers to {"class_name", "config"} dicts and back, and
the functional graph's config (layers with their inbound nodes), as Keras does."""
from ..layers.layer import Layer, flatten

_custom_objects = {}


def register(cls, name=None):
    _custom_objects[name or cls.__name__] = cls
    return cls


def _registry():
    from .. import layers as layers_module
    from . import model as model_module, sequential as seq_module
    reg = {n: c for n, c in vars(layers_module).items() if isinstance(c, type) and issubclass(c, Layer)}
    reg.update({"Model": model_module.Model, "Functional": model_module.Functional,
                "Sequential": seq_module.Sequential})
    reg.update(_custom_objects)
    return reg


def serialize_layer(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize_layer(config, custom_objects=None):
    reg = _registry()
    reg.update(custom_objects or {})
    name = config.get("class_name")
    cls = reg.get(name)
    if cls is None:
        raise ValueError(f"Unknown layer class '{name}'. If it is a custom layer, pass it in custom_objects="
                         f"{{'{name}': {name}}} or decorate the class with "
                         "@lamina.utils.register_keras_serializable()")
    cfg = dict(config.get("config", {}))
    if hasattr(cls, "from_config"):
        try:
            return cls.from_config(cfg, custom_objects=custom_objects)
        except TypeError as e:
            if "custom_objects" not in str(e):
                raise
            return cls.from_config(cfg)
    return cls(**cfg)


def functional_config(model):
    from ..layers.input_layer import InputLayer
    node_index = {}
    for layer in model.layers:
        for i, node in enumerate(layer._inbound_nodes):
            node_index[id(node)] = i
    layers = []
    for layer in model.layers:
        inbound = []
        for node in layer._inbound_nodes:
            if id(node) not in {id(n) for n in model._nodes} or isinstance(layer, InputLayer):
                continue
            args, kwargs = node.call_args
            inbound.append({"args": _encode(args), "kwargs": _encode(kwargs)})
        layers.append({"class_name": type(layer).__name__, "name": layer.name, "config": layer.get_config(),
                       "inbound_nodes": inbound})

    def ref(t):
        layer, idx, ti = t._keras_history
        return [layer.name, idx, ti]
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": _encode_struct(model._inputs_struct, ref),
            "output_layers": _encode_struct(model._outputs_struct, ref)}


def _encode_struct(s, ref):
    if isinstance(s, dict):
        return {k: _encode_struct(v, ref) for k, v in s.items()}
    if isinstance(s, (list, tuple)):
        return [_encode_struct(v, ref) for v in s]
    return ref(s)


def _encode(x):
    from ..layers.input_layer import KerasTensor
    if isinstance(x, KerasTensor):
        layer, idx, ti = x._keras_history
        return {"__keras_tensor__": [layer.name, idx, ti]}
    if isinstance(x, dict):
        return {k: _encode(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_encode(v) for v in x]
    return x


def functional_from_config(config, custom_objects=None):
    from .model import Functional
    from ..layers.input_layer import InputLayer
    created = {}
    for lc in config["layers"]:
        created[lc["name"]] = deserialize_layer(lc, custom_objects)
    # replay the nodes in file order until every node has been created
    pending = [(lc["name"], n) for lc in config["layers"] for n in lc.get("inbound_nodes", [])]

    def tensor_of(ref):
        name, idx, ti = ref
        layer = created[name]
        if idx >= len(layer._inbound_nodes):
            return None
        return layer._inbound_nodes[idx].outputs[ti]

    def decode(x):
        if isinstance(x, dict) and "__keras_tensor__" in x:
            t = tensor_of(x["__keras_tensor__"])
            if t is None:
                raise LookupError
            return t
        if isinstance(x, dict):
            return {k: decode(v) for k, v in x.items()}
        if isinstance(x, list):
            return [decode(v) for v in x]
        return x
    progress = True
    while pending and progress:
        progress = False
        rest = []
        for name, node in pending:
            try:
                args = decode(node["args"])
                kwargs = decode(node["kwargs"])
            except LookupError:
                rest.append((name, node))
                continue
            created[name](*args, **kwargs)
            progress = True
        pending = rest
    if pending:
        raise ValueError(f"Could not rebuild the functional graph: layers {[n for n, _ in pending]} have inputs that "
                         "are never produced")

    def decode_struct(s):
        if isinstance(s, dict):
            return {k: decode_struct(v) for k, v in s.items()}
        if isinstance(s, list) and len(s) == 3 and isinstance(s[0], str):
            return tensor_of(s)
        return [decode_struct(v) for v in s]
    inputs = decode_struct(config["input_layers"])
    outputs = decode_struct(config["output_layers"])
    return Functional(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))

"""The functional graph: the order of the Nodes recorded when layers are called on KerasTensors
(layers/symbolic.py), and the replay of them on real tensors that Functional models run."""
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import flatten, map_structure
from ..backend.quantization import ByteActivation, to_float
from .fusion import fused_call
from .qfusion import run_group


def topological_nodes(outputs):
    """Nodes that produce `outputs`, in an order where each comes after its parents."""
    order, seen = [], set()

    def visit(node):
        if id(node) in seen:
            return
        seen.add(id(node))
        for p in node.parent_nodes:
            visit(p)
        order.append(node)
    for t in outputs:
        if t._keras_history is None:
            raise ValueError(f"{t} was not produced by a layer: the outputs of a functional Model must come from "
                             "layers called on lamina.Input(...) tensors")
        layer, idx, _ = t._keras_history
        visit(layer._inbound_nodes[idx])
    return order


def keras_layer_order(inputs, outputs):
    """The layers of the graph from `inputs` to `outputs` in Keras's order (`Functional.layers`,
    and so the order in which Keras-layout weight files are matched): by decreasing depth from
    the outputs, and within one depth by first visit of a depth-first walk from the outputs.
    Weight files written by Keras depend on this order, not on the execution order."""
    input_ids = {id(t) for t in inputs}
    finished, post_order, first_visit = set(), [], {}

    def visit(t):
        layer, idx, _ = t._keras_history
        node = layer._inbound_nodes[idx]
        if id(node) in finished:
            return
        if not isinstance(layer, InputLayer) and id(t) in input_ids:
            finished.add(id(node))
            return
        first_visit.setdefault(id(layer), len(first_visit))
        if not isinstance(layer, InputLayer):
            for p in node.inputs:
                visit(p)
        finished.add(id(node))
        post_order.append(node)
    for t in outputs:
        visit(t)
    in_graph = {id(n) for n in post_order}
    node_depth, layer_depth, layers = {}, {}, {}
    for node in reversed(post_order):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = node_depth[id(node)] = depth
        layers[id(node.layer)] = node.layer
        for p in node.parent_nodes:
            if id(p) in in_graph:
                node_depth[id(p)] = max(depth + 1, node_depth.get(id(p), 0))
    return sorted(layers.values(), key=lambda l: (-layer_depth[id(l)], first_visit[id(l)]))


def replay(nodes, input_tensors, input_values, output_tensors, fusions=None, qgroups=None):
    """Runs the graph: maps each KerasTensor to a real tensor, node by node. `fusions`
    (fusion.plan's) lets a BatchNormalization node and its ReLU run as one op when they may;
    `qgroups` (qfusion.plan's) the quantized convolutions with their padding, normalization and
    ReLU."""
    values = {id(k): v for k, v in zip(input_tensors, input_values)}
    fused = set()  # ids of the nodes already computed by a fusion

    def sub(x):
        if isinstance(x, KerasTensor):
            v = values.get(id(x))
            if v is None:
                raise ValueError(f"Graph disconnected: no value for {x}; it is not computed from the model's inputs")
            return v
        return x
    for node in nodes:
        if isinstance(node.layer, InputLayer) or id(node) in fused:
            continue
        args, kwargs = node.call_args
        a = [map_structure(sub, v) for v in args]
        k = {n: map_structure(sub, v) for n, v in kwargs.items()}
        if qgroups:
            group = qgroups.get(id(node))
            if group is not None:
                out = run_group(group, a[0])
                if out is not None:
                    values[id(group.last.outputs[0])] = out
                    fused.update(id(n) for n in group.nodes[1:])
                    continue
            a = [to_float(v) if isinstance(v, ByteActivation) else v for v in a]
        pair = fusions.get(id(node)) if fusions else None
        if pair is not None:
            act, cap = pair
            out = fused_call(node.layer, act.layer, a[0], k.get("training"), cap)
            if out is not None:
                values[id(act.outputs[0])] = out
                fused.add(id(act))
                continue
        out = node.layer(*a, **k)
        for kt, v in zip(node.outputs, flatten(out)):
            values[id(kt)] = v
    return [sub(t) for t in output_tensors]

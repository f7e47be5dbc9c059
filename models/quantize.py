"""`model.quantize("int8", filters=None)` (Keras 3; "int4" likewise for Dense, EinsumDense and
Embedding only, the other layers staying float as in Keras): every supported layer (Dense, EinsumDense,
Conv2D, DepthwiseConv2D, Embedding; MultiHeadAttention through its EinsumDense projections) that
`filters` selects, quantized by layers/quantization.py's `quantize_layer`, with what a layer
alone cannot do: the data-free bias correction of a convolution whose input is a
BatchNormalization's output (the input channels' expected values come from the model's graph).
The fused int8 groups are models/qfusion.py's.

`filters` is Keras's (keras/src/quantizers/utils.py should_quantize_layer): None, a regex
string (re.search on layer.name), a list or tuple of them (any one matching) or a
callable(layer) -> bool; anything else is Keras's ValueError. As in Keras, filters that select
no quantizable layer quantize nothing, silently; with filters=None a model with no quantizable
layer at all is an error here (Keras only warns per layer), since it is almost always a mistake."""
import re
from collections.abc import Callable

import numpy as np

from ..layers.convolutional import ZeroPadding2D
from ..layers.normalization import BatchNormalization
from ..layers.quantization import INT4_KINDS, INT4_SUPPORTED, SUPPORTED, layer_kind, quantize_layer, supports
from .functional import topological_nodes
from .fusion import relu_cap


def should_quantize_layer(layer, filters):
    """Keras's should_quantize_layer: whether `filters` (see the module docstring) selects `layer`."""
    if filters is None:
        return True
    if isinstance(filters, str):
        return bool(re.search(filters, layer.name))
    if isinstance(filters, (list, tuple)):
        return any(re.search(pat, layer.name) for pat in filters)
    if callable(filters):
        return bool(filters(layer))
    return True


def check_filters(filters):
    if filters is not None and not isinstance(filters, (str, Callable, list, tuple)):
        raise ValueError("The `filters` argument must be a regex string, a list of regex strings, or a callable. "
                         f"Received: {type(filters)}")
    if isinstance(filters, (list, tuple)) and not all(isinstance(p, str) for p in filters):
        raise ValueError("The `filters` argument must be a regex string, a list of regex strings, or a callable. "
                         f"Received a {type(filters).__name__} holding {[type(p).__name__ for p in filters]}")


def quantize_model(model, mode, filters=None):
    """Quantizes every supported layer of a built model that `filters` selects (Keras's
    Model.quantize): the others are left in float32. Raises when filters is None and nothing can
    be quantized."""
    check_filters(filters)
    if mode not in ("int8", "int4"):
        raise ValueError(f"{model.name}.quantize: expected mode 'int8' or 'int4', received {mode!r} (lamina "
                         "quantizes to int8 and int4 only; float8, GPTQ and AWQ are not supported)")
    if not model.built:
        raise ValueError(f"Model '{model.name}'.quantize: the model is not built yet; call it on data or build it "
                         "first")
    done = 0
    means = _input_means(model) if mode == "int8" else {}
    for layer in model._all_layers():
        if mode == "int4" and layer_kind(layer) not in INT4_KINDS:
            continue  # Keras: int4 has no form for the other layers (Conv2D...), which stay float
        if supports(layer) and getattr(layer, "quantization_mode", None) is None and \
                should_quantize_layer(layer, filters):
            quantize_layer(layer, mode, input_mean=means.get(id(layer)))
            done += 1
    if not done:
        if filters is None:
            raise ValueError(f"Model '{model.name}'.quantize: no layer can be quantized (lamina quantizes "
                             f"{SUPPORTED} to int8, {INT4_SUPPORTED} to int4)")
        return  # Keras: filters that select nothing quantize nothing
    model._quantized = True


def quantized_layers(model):
    return [l for l in model._all_layers() if getattr(l, "quantization_mode", None) is not None]


def _clipped_normal_mean(m, s, cap):
    """E[min(max(Y, 0), cap)] for Y ~ N(m, s^2), elementwise (cap may be inf)."""
    from math import erf, exp, pi, sqrt
    out = np.empty(len(m), np.float64)
    for i, (mi, si) in enumerate(zip(m, s)):
        if si < 1e-12:
            out[i] = min(max(mi, 0.0), cap)
            continue
        a = -mi / si
        cdf = lambda z: 0.5 * (1.0 + erf(z / sqrt(2.0)))  # noqa: E731
        pdf = lambda z: exp(-0.5 * z * z) / sqrt(2.0 * pi)  # noqa: E731
        if np.isfinite(cap):
            b = (cap - mi) / si
            out[i] = mi * (cdf(b) - cdf(a)) + si * (pdf(a) - pdf(b)) + cap * (1.0 - cdf(b))
        else:
            out[i] = mi * (1.0 - cdf(a)) + si * pdf(a)
    return out


def _input_means(model):
    """{id(conv layer): expected value of each input channel} for the convolutions of `model`
    (and the models in it) whose input is a BatchNormalization's output, optionally through a
    capped or plain ReLU and zero padding: the normalized values follow N(beta, gamma^2), so the
    mean of their clipped values is known without data (data-free bias correction), provided the
    normalization's moving statistics were measured (not still its initial zeros and ones: in an
    untrained model the values reaching it can have any scale, and a correction sized for
    normalized values would swamp them). Other convolutions (the first one, after a pooling, a
    layer used twice) get none."""
    from .model import Model
    means = {}
    models = [model] + [l for l in model._all_layers() if isinstance(l, Model)]
    for m in models:
        preds = _predecessors(m)
        for layer, prev in preds.items():
            if layer_kind(layer) not in ("Conv2D", "DepthwiseConv2D") or prev is None:
                continue
            p = prev
            while p is not None and type(p) is ZeroPadding2D:
                p = preds.get(p)
            cap = relu_cap(p) if p is not None else None
            if cap is not None:
                p = preds.get(p)
            if p is None or type(p) is not BatchNormalization or not p.built or p._axis != p.input_spec.ndim - 1:
                continue
            if not np.any(p.moving_mean.numpy()) and np.all(p.moving_variance.numpy() == 1):
                continue  # statistics never measured (an untrained model): its outputs need not follow N(beta, gamma^2)
            beta = p.beta.numpy().astype(np.float64) if p.beta is not None else np.zeros(p.moving_mean.shape)
            gamma = p.gamma.numpy().astype(np.float64) if p.gamma is not None else np.ones(p.moving_mean.shape)
            if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(gamma))):
                continue
            means[id(layer)] = beta if cap is None else _clipped_normal_mean(beta, np.abs(gamma), cap)
    return means


def _predecessors(model):
    """{layer: the layer whose output is its only input, or None} for the layers of a
    Functional or (built) Sequential model's graph that are called once, on one tensor; {} for a
    model without a graph (a subclass: its call order is its own)."""
    nodes = getattr(model, "_nodes", None)
    if nodes is None:
        outputs = getattr(model, "outputs", None)
        if not outputs:
            return {}
        nodes = topological_nodes(outputs)  # a Sequential's graph
    producer = {id(n.outputs[0]): n for n in nodes if len(n.outputs) == 1}
    calls = {}
    for n in nodes:
        calls[id(n.layer)] = calls.get(id(n.layer), 0) + 1
    preds = {}
    for n in nodes:
        args, kwargs = n.call_args
        if calls[id(n.layer)] != 1 or len(args) != 1:
            continue
        src = producer.get(id(args[0]))
        ok = src is not None and calls.get(id(src.layer)) == 1 and len(src.call_args[0]) == 1
        preds[n.layer] = src.layer if ok else None
    return preds

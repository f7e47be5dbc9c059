"""model.summary(): one row per layer with its output shape and parameter count, then totals."""
import numpy as np


def _shape(layer):
    try:
        out = layer.output
    except (AttributeError, ValueError):
        return "?"
    if isinstance(out, (list, tuple)):
        return ", ".join(str(_fmt(t.shape)) for t in out)
    return _fmt(out.shape)


def _fmt(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def print_summary(model, print_fn=print):
    from ..layers.input_layer import InputLayer
    rows = []
    for layer in model.layers:
        if isinstance(layer, InputLayer) and type(model).__name__ == "Sequential":
            continue
        params = layer.count_params() if layer.built else 0
        rows.append((f"{layer.name} ({type(layer).__name__})", _shape(layer), f"{params:,}"))
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
         for i, h in enumerate(("Layer (type)", "Output Shape", "Param #"))]
    line = "-" * (sum(w) + 6)
    print_fn(f'Model: "{model.name}"')
    print_fn(line)
    print_fn(f"{'Layer (type)':<{w[0]}}   {'Output Shape':<{w[1]}}   {'Param #':>{w[2]}}")
    print_fn("=" * len(line))
    for r in rows:
        print_fn(f"{r[0]:<{w[0]}}   {r[1]:<{w[1]}}   {r[2]:>{w[2]}}")
    print_fn("=" * len(line))
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")

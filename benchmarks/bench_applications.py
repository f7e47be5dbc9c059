"""Pretrained-model speed: InceptionV3 (and MobileNet 0.25) inference, lamina vs Keras (JAX and
torch backends) and PyTorch, each library in its own process, alternating.

    predict:    InceptionV3 with its top, 299x299, `predict` on a batch of 8 (images/s)
    bottleneck: InceptionV3 without top, average-pooled (the retrain tool's features),
                64 images in batches of 32 (images/s)
    mobilenet:  MobileNet alpha 0.25 without top, pooled, 64 images at 224x224 (images/s)

Random weights everywhere (speed does not depend on them). PyTorch runs the very same graphs
(traced from lamina's models; NCHW, torch.nn.functional, no_grad). Medians over `--repeats`
calls after warm-up, then the median over rounds. With --shapes, lamina's convolution speed
per InceptionV3 shape (batch 8) in GFLOP/s.

    PYTHONPATH=.dev python3 benchmarks/bench_applications.py [--rounds 3] [--threads 2] [--shapes]
"""
import argparse
import json
import os
import tempfile

import numpy as np

from _common import alternate, median_field, median_ms, run_worker

LIBS = ("lamina", "keras_jax", "keras_torch", "torch")


def _inputs(n, size):
    return np.random.default_rng(0).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def worker_lamina(args):
    import lamina
    from lamina import applications
    x8, x64 = _inputs(8, 299), _inputs(64, 299)
    m224 = _inputs(64, 224)
    top = applications.InceptionV3(weights=None)
    base = applications.InceptionV3(weights=None, include_top=False, pooling="avg")
    mob = applications.MobileNet(weights=None, alpha=0.25, include_top=False, pooling="avg",
                                 input_shape=(224, 224, 3))
    out = {}
    out["predict"] = dict(ms=median_ms(lambda: top.predict(x8, batch_size=8, verbose=0), args.warmup, args.repeats))
    out["bottleneck"] = dict(ms=median_ms(lambda: base.predict(x64, batch_size=32, verbose=0), 1, args.repeats))
    out["mobilenet"] = dict(ms=median_ms(lambda: mob.predict(m224, batch_size=32, verbose=0), 2, args.repeats))
    if args.shapes:
        out["shapes"] = conv_shapes(lamina, top, args)
    return out


def conv_shapes(lamina, model, args):
    """Times every distinct Conv2D shape of InceptionV3 at batch 8 (forward, ops.conv)."""
    from lamina import layers, ops
    seen = {}
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            inp = layer._inbound_nodes[0].inputs[0].shape
            key = (inp[1], inp[2], inp[3], layer.kernel_size, layer.strides, layer.padding, layer.filters)
            seen.setdefault(key, 0)
            seen[key] += 1
    rng = np.random.default_rng(0)
    rows = []
    for (h, w, c, k, s, p, f), count in seen.items():
        x = lamina.convert_to_tensor(rng.standard_normal((8, h, w, c)).astype(np.float32))
        kern = lamina.convert_to_tensor((rng.standard_normal(k + (c, f)) * 0.05).astype(np.float32))
        y = ops.conv(x, kern, strides=s, padding=p)
        ms = median_ms(lambda: ops.conv(x, kern, strides=s, padding=p), 2, max(3, args.repeats))
        flops = 2.0 * np.prod(y.shape) * k[0] * k[1] * c
        rows.append(dict(shape=f"{h}x{w}x{c} k{k[0]}x{k[1]} s{s[0]} {p} -> {f}", count=count, ms=ms,
                         gflops=flops / ms / 1e6))
    return rows


def worker_keras(args, backend):
    os.environ["KERAS_BACKEND"] = backend
    import keras
    if backend == "torch":
        import torch
        torch.set_num_threads(args.threads)
    x8, x64 = _inputs(8, 299), _inputs(64, 299)
    m224 = _inputs(64, 224)
    top = keras.applications.InceptionV3(weights=None)
    base = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg")
    mob = keras.applications.MobileNet(weights=None, alpha=0.25, include_top=False, pooling="avg",
                                       input_shape=(224, 224, 3))
    return {"predict": dict(ms=median_ms(lambda: top.predict(x8, batch_size=8, verbose=0), args.warmup,
                                         args.repeats)),
            "bottleneck": dict(ms=median_ms(lambda: base.predict(x64, batch_size=32, verbose=0), 1, args.repeats)),
            "mobilenet": dict(ms=median_ms(lambda: mob.predict(m224, batch_size=32, verbose=0), 2, args.repeats))}


def graph_spec(model):
    """The model's graph as plain data (execution order, each layer's kind and settings) for the
    PyTorch worker, which rebuilds the same network without importing lamina."""
    from lamina import layers
    ids, nodes = {}, []

    def tid(t):
        return ids.setdefault(id(t), len(ids))
    for t in model.inputs:
        tid(t)
    for node in model._nodes:
        l = node.layer
        if isinstance(l, layers.InputLayer):
            continue
        e = {"kind": type(l).__name__, "in": [tid(t) for t in node.inputs], "out": tid(node.outputs[0])}
        if isinstance(l, (layers.Conv2D, layers.DepthwiseConv2D)):
            e.update(kernel=list(l.kernel.shape), strides=list(l.strides), padding=l.padding, bias=l.use_bias,
                     in_shape=list(node.inputs[0].shape[1:3]))
        elif isinstance(l, layers.BatchNormalization):
            e.update(c=l.moving_mean.shape[0], eps=l.epsilon, scale=l.scale)
        elif isinstance(l, (layers.MaxPooling2D, layers.AveragePooling2D)):
            e.update(size=list(l.pool_size), strides=list(l.strides), padding=l.padding)
        elif isinstance(l, layers.ZeroPadding2D):
            e.update(pads=[list(p) for p in l.padding])
        elif isinstance(l, layers.Dense):
            e.update(kernel=list(l.kernel.shape))
        elif isinstance(l, (layers.Activation, layers.ReLU)):
            e.update(act=getattr(l.activation, "__name__", "relu") if isinstance(l, layers.Activation) else "relu6")
        nodes.append(e)
    return {"input": tid(model.inputs[0]), "output": tid(model.outputs[0]), "nodes": nodes}


def torch_net(spec, torch):
    """A function NCHW -> output running `spec` with torch.nn.functional and random weights."""
    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)
    params = []
    for e in spec["nodes"]:
        if e["kind"] == "Conv2D":
            kh, kw, cin, cout = e["kernel"]
            params.append(torch.randn(cout, cin, kh, kw, generator=g) * (1 / (kh * kw * cin) ** 0.5))
        elif e["kind"] == "DepthwiseConv2D":
            kh, kw, c, m = e["kernel"]
            params.append(torch.randn(c * m, 1, kh, kw, generator=g) * (1 / (kh * kw) ** 0.5))
        elif e["kind"] == "BatchNormalization":
            c = e["c"]
            params.append((torch.zeros(c), torch.ones(c), torch.ones(c), torch.zeros(c)))
        elif e["kind"] == "Dense":
            params.append(torch.randn(e["kernel"][1], e["kernel"][0], generator=g) * 0.01)
        else:
            params.append(None)

    def same_pads(size, k, s):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return total // 2, total - total // 2

    def run(x):
        v = {spec["input"]: x}
        for e, p in zip(spec["nodes"], params):
            a = [v[i] for i in e["in"]]
            k = e["kind"]
            if k in ("Conv2D", "DepthwiseConv2D"):
                y = a[0]
                if e["padding"] == "same":
                    (pt, pb), (pl, pr) = [same_pads(n, kk, s) for n, kk, s in
                                          zip(y.shape[2:], e["kernel"][:2], e["strides"])]
                    y = F.pad(y, (pl, pr, pt, pb))
                y = F.conv2d(y, p, stride=e["strides"], groups=y.shape[1] if k == "DepthwiseConv2D" else 1)
            elif k == "BatchNormalization":
                y = F.batch_norm(a[0], p[3], p[2], p[1], p[0], False, 0.0, e["eps"])
            elif k in ("Activation", "ReLU"):
                y = {"relu": F.relu, "relu6": F.relu6, "softmax": lambda t: F.softmax(t, 1)}[e["act"]](a[0])
            elif k == "MaxPooling2D":
                y = F.max_pool2d(a[0], e["size"], e["strides"])
            elif k == "AveragePooling2D":        # Keras's "same": 3x3 stride 1, border windows average fewer
                y = F.avg_pool2d(a[0], e["size"], e["strides"], padding=e["size"][0] // 2, count_include_pad=False)
            elif k == "Concatenate":
                y = torch.cat(a, 1)
            elif k == "ZeroPadding2D":
                (t, b), (l, r) = e["pads"]
                y = F.pad(a[0], (l, r, t, b))
            elif k == "GlobalAveragePooling2D":
                y = a[0].mean((2, 3))
            elif k == "Dense":
                y = F.linear(a[0], p)
            else:
                raise ValueError(f"bench_applications: no PyTorch translation for {k}")
            v[e["out"]] = y
        return v[spec["output"]]
    return run


def worker_torch(args):
    import torch
    torch.set_num_threads(args.threads)
    specs = json.load(open(args.spec))
    top, base, mob = (torch_net(specs[k], torch) for k in ("top", "base", "mobilenet"))
    x8 = torch.from_numpy(_inputs(8, 299).transpose(0, 3, 1, 2).copy())
    x64 = torch.from_numpy(_inputs(64, 299).transpose(0, 3, 1, 2).copy())
    m224 = torch.from_numpy(_inputs(64, 224).transpose(0, 3, 1, 2).copy())

    def batches(net, x):
        with torch.no_grad():
            for i in range(0, len(x), 32):
                net(x[i:i + 32])

    def predict():
        with torch.no_grad():
            top(x8)
    return {"predict": dict(ms=median_ms(predict, args.warmup, args.repeats)),
            "bottleneck": dict(ms=median_ms(lambda: batches(base, x64), 1, args.repeats)),
            "mobilenet": dict(ms=median_ms(lambda: batches(mob, m224), 2, args.repeats))}


def write_specs(path):
    """Graph specs of the three benchmarked models (built here, in the driver, not in a worker)."""
    from lamina import applications
    specs = {"top": graph_spec(applications.InceptionV3(weights=None)),
             "base": graph_spec(applications.InceptionV3(weights=None, include_top=False, pooling="avg")),
             "mobilenet": graph_spec(applications.MobileNet(weights=None, alpha=0.25, include_top=False,
                                                            pooling="avg", input_shape=(224, 224, 3)))}
    with open(path, "w") as f:
        json.dump(specs, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--libs", nargs="+", default=list(LIBS), choices=LIBS)
    ap.add_argument("--shapes", action="store_true", help="also lamina's GFLOP/s per InceptionV3 conv shape")
    ap.add_argument("--worker", choices=LIBS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.worker == "lamina":
            res = worker_lamina(args)
        elif args.worker == "torch":
            res = worker_torch(args)
        else:
            res = worker_keras(args, args.worker.split("_")[1])
        print(json.dumps(res))
        return

    spec = os.path.join(tempfile.mkdtemp(prefix="lamina_bench_"), "graphs.json")
    write_specs(spec)
    extra = ["--repeats", args.repeats, "--warmup", args.warmup, "--spec", spec] + (["--shapes"] if args.shapes else [])

    def one(lib):
        try:
            return run_worker(__file__, lib, args.threads, extra)
        except RuntimeError as e:
            if "No module named" in str(e):
                return None
            raise
    runs = alternate(args.rounds, one, libs=tuple(args.libs))
    images = {"predict": 8, "bottleneck": 64, "mobilenet": 64}
    print(f"Images per second, {args.threads} threads, median of {args.rounds} rounds x {args.repeats} repeats")
    libs = [lib for lib in args.libs if runs.get(lib)]
    print(f"{'case':12}" + "".join(f"{lib:>13}" for lib in libs) + f"{'lamina/best other':>19}")
    for case, n in images.items():
        rates = {lib: n / median_field(runs, lib, case) * 1e3 for lib in libs}
        others = [v for lib, v in rates.items() if lib != "lamina" and v == v]
        best = max(others) if others else float("nan")
        print(f"{case:12}" + "".join(f"{rates[lib]:13.1f}" for lib in libs)
              + f"{rates.get('lamina', float('nan')) / best:18.2f}x")
    if args.shapes and runs.get("lamina"):
        print("\nlamina conv2d forward per InceptionV3 shape, batch 8 (median over rounds)")
        rows = runs["lamina"][0]["shapes"]
        for i, row in enumerate(rows):
            ms = np.median([r["shapes"][i]["ms"] for r in runs["lamina"]])
            gf = np.median([r["shapes"][i]["gflops"] for r in runs["lamina"]])
            print(f"  {row['shape']:38} x{row['count']:<3} {ms:8.2f} ms {gf:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()

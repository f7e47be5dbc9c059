"""Pretrained-model speed: InceptionV3 (and MobileNet 0.25) inference, lamina vs Keras (JAX and
torch backends) and PyTorch, each library in its own process, alternating.

    predict:    InceptionV3 with its top, 299x299, `predict` on a batch of 8 (images/s)
    bottleneck: InceptionV3 without top, average-pooled (the retrain tool's features),
                64 images in batches of 32 (images/s)
    mobilenet:  MobileNet alpha 0.25 without top, pooled, 64 images at 224x224 (images/s)

Random weights everywhere (speed does not depend on them). PyTorch runs torchvision's
inception_v3 (eval mode, no aux logits) when torchvision is installed: the same convolutions
up to its own layout (NCHW). Medians over `--repeats` calls after warm-up, then the median over
rounds. With --shapes, lamina's convolution speed per InceptionV3 shape (batch 8) in GFLOP/s.

    PYTHONPATH=.dev python3 benchmarks/bench_applications.py [--rounds 3] [--threads 2] [--shapes]
"""
import argparse
import json
import os

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


def worker_torch(args):
    import torch
    torch.set_num_threads(args.threads)
    try:
        import torchvision
    except ImportError:
        return None
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    x8 = torch.from_numpy(_inputs(8, 299).transpose(0, 3, 1, 2).copy())
    x64 = torch.from_numpy(_inputs(64, 299).transpose(0, 3, 1, 2).copy())
    feats = torch.nn.Sequential(*list(net.children())[:-2]).eval()   # up to the average pool

    def bottleneck():
        with torch.no_grad():
            for i in range(0, 64, 32):
                feats(x64[i:i + 32]).flatten(1)

    def predict():
        with torch.no_grad():
            net(x8)
    return {"predict": dict(ms=median_ms(predict, args.warmup, args.repeats)),
            "bottleneck": dict(ms=median_ms(bottleneck, 1, args.repeats))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--libs", nargs="+", default=list(LIBS), choices=LIBS)
    ap.add_argument("--shapes", action="store_true", help="also lamina's GFLOP/s per InceptionV3 conv shape")
    ap.add_argument("--worker", choices=LIBS)
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

    extra = ["--repeats", args.repeats, "--warmup", args.warmup] + (["--shapes"] if args.shapes else [])

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

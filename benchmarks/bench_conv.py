"""Convolution speed: lamina vs PyTorch on the MNIST convnet's two convolutions.

    conv1: batch 128, 28x28x1  -> 32 filters 5x5, padding "same"
    conv2: batch 128, 14x14x32 -> 64 filters 5x5, padding "same"

For each convolution: the forward pass alone, and forward + backward with both gradients
("full": input and filter) and with the filter gradient only ("filter": what the first layer
needs in training). lamina runs NHWC (`ops.conv`), PyTorch NCHW (`torch.nn.functional.conv2d`).

Each library runs in its own process (they would fight over the cores in one), alternating
lamina, torch, lamina, torch ...; each process warms up, then times `--repeats` iterations and
reports their median. The table shows the median over rounds, and the ratio torch / lamina
(>= 1.0 means lamina is at least as fast). Both use `--threads` threads (default 2).
lamina's time is also split into im2col + col2im (the convolution's own overhead) and GEMM (or the
direct kernels), from the kernels' profile counters.

    PYTHONPATH=.dev python3 benchmarks/bench_conv.py [--rounds 3] [--repeats 10] [--threads 2] [--direct off]
        [--winograd off]
"""
import argparse
import json

from _common import alternate, median_field, median_ms, run_worker

CASES = {
    "conv1": dict(batch=128, hw=28, cin=1, cout=32, k=5),
    "conv2": dict(batch=128, hw=14, cin=32, cout=64, k=5),
}
VARIANTS = ["forward", "fwd+bwd full", "fwd+bwd filter"]


# ---- workers ---------------------------------------------------------------------------------------


def worker_lamina(args):
    import numpy as np
    import lamina
    from lamina import ops
    kern = lamina.get_device("cpu").kernels
    kern.conv_schedule({"auto": 0, "split": 1, "batch": 2}[args.schedule])
    kern.conv_direct_wide(1 if args.direct == "on" else 0)
    kern.conv_winograd(1 if args.winograd == "on" else 0)
    rng = np.random.default_rng(0)
    out = {}
    for name, c in CASES.items():
        x_np = rng.standard_normal((c["batch"], c["hw"], c["hw"], c["cin"])).astype(np.float32)
        w_np = (rng.standard_normal((c["k"], c["k"], c["cin"], c["cout"])) * 0.1).astype(np.float32)
        g = lamina.convert_to_tensor(rng.standard_normal((c["batch"], c["hw"], c["hw"], c["cout"])).astype(np.float32))
        x_var, x_const, w = lamina.Variable(x_np), lamina.convert_to_tensor(x_np), lamina.Variable(w_np)

        def fwd():
            ops.conv(x_const, w, padding="same")

        def step(x, sources):
            with lamina.GradientTape() as tape:
                y = ops.conv(x, w, padding="same")
            tape.gradient(y, sources, output_gradients=g)

        fns = {"forward": fwd,
               "fwd+bwd full": lambda: step(x_var, [x_var, w]),
               "fwd+bwd filter": lambda: step(x_const, [w])}
        for v, fn in fns.items():
            ms = median_ms(fn, args.warmup, args.repeats, lambda: kern.conv_profile(True))
            p = kern.conv_profile(True)
            n = args.repeats
            out[f"{name}|{v}"] = dict(ms=ms, im2col=(p["im2col"] + p["col2im"]) * 1e3 / n, gemm=p["gemm"] * 1e3 / n)
    return out


def worker_torch(args):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {}
    for name, c in CASES.items():
        x = torch.randn(c["batch"], c["cin"], c["hw"], c["hw"])
        w = (torch.randn(c["cout"], c["cin"], c["k"], c["k"]) * 0.1).requires_grad_()
        g = torch.randn(c["batch"], c["cout"], c["hw"], c["hw"])
        x_req = x.clone().requires_grad_()

        def fwd():
            with torch.no_grad():
                F.conv2d(x, w, padding="same")

        def step(xx, sources):
            y = F.conv2d(xx, w, padding="same")
            torch.autograd.grad(y, sources, g)

        fns = {"forward": fwd,
               "fwd+bwd full": lambda: step(x_req, [x_req, w]),
               "fwd+bwd filter": lambda: step(x, [w])}
        for v, fn in fns.items():
            out[f"{name}|{v}"] = dict(ms=median_ms(fn, args.warmup, args.repeats))
    return out


# ---- driver ----------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--schedule", choices=["auto", "split", "batch"], default="auto",
                    help="lamina's thread schedule (csrc/cpu/conv.cpp): images split across threads "
                         "('batch'), or each chunk split across threads ('split')")
    ap.add_argument("--direct", choices=["on", "off"], default="on",
                    help="'off': conv2 (32 input channels) through im2col + GEMM instead of the direct "
                         "AVX-512 kernels (csrc/cpu/conv_direct.cpp), for comparison")
    ap.add_argument("--winograd", choices=["on", "off"], default="on",
                    help="'off': conv2 (5x5, stride 1) through the direct kernels instead of the Winograd "
                         "products (csrc/cpu/conv_direct.cpp), for comparison")
    ap.add_argument("--worker", choices=["lamina", "torch"])
    args = ap.parse_args()
    if args.worker:
        res = worker_lamina(args) if args.worker == "lamina" else worker_torch(args)
        print(json.dumps(res))
        return

    runs = alternate(args.rounds, lambda lib: run_worker(__file__, lib, args.threads, ["--repeats", args.repeats, "--warmup", args.warmup, "--schedule", args.schedule,
                                                                   "--direct", args.direct,
                                                                   "--winograd", args.winograd]))

    def med(lib, key, field="ms"):
        return median_field(runs, lib, key, field)

    print(f"MNIST convnet convolutions, batch 128, {args.threads} threads, median of {args.rounds} rounds "
          f"x {args.repeats} repeats (ms); lamina schedule: {args.schedule}, direct kernels: {args.direct}, "
          f"Winograd: {args.winograd}")
    hdr = f"{'case':7} {'variant':15} {'lamina':>9} {'torch':>9} {'torch/lamina':>13} {'im2col+col2im':>14} {'gemm':>9}"
    print(hdr)
    print("-" * len(hdr))
    total_l = total_t = 0.0
    for name in CASES:
        for v in VARIANTS:
            key = f"{name}|{v}"
            lm, tm = med("lamina", key), med("torch", key)
            im, gm = med("lamina", key, "im2col"), med("lamina", key, "gemm")
            print(f"{name:7} {v:15} {lm:9.2f} {tm:9.2f} {tm / lm:12.2f}x {im:14.2f} {gm:9.2f}")
    # the training step of the MNIST convnet: conv1 needs only the filter gradient, conv2 both
    total_l = med("lamina", "conv1|fwd+bwd filter") + med("lamina", "conv2|fwd+bwd full")
    total_t = med("torch", "conv1|fwd+bwd filter") + med("torch", "conv2|fwd+bwd full")
    print("-" * len(hdr))
    print(f"{'train step (conv1 filter + conv2 full)':23} {total_l:9.2f} {total_t:9.2f} {total_t / total_l:12.2f}x")
    print("\nim2col+col2im: lamina's own data movement (the rest of lamina's time is GEMM and Python).")


if __name__ == "__main__":
    main()

"""The newer layers' kernels against PyTorch: transposed convolution, 3-D convolution,
multi-head attention and scaled dot-product attention alone, forward + backward (gradients of the
inputs and the weights), float32.

Each library runs in its own process (`_common.run_worker`), alternating, each with the same
thread count; a case's figure is the median over processes of each process's median time after
warm-up. Cases (batch first, channels last for lamina; PyTorch's own layout for PyTorch):
  conv2d_transpose   Conv2DTranspose(32, 3, strides=2, padding="same") on (32, 14, 14, 64) -> 28x28
  conv1d_transpose   Conv1DTranspose(64, 5, strides=2, padding="same") on (32, 128, 64)
  conv3d             Conv3D(32, 3, padding="same") on (8, 16, 16, 16, 16)
  mha                MultiHeadAttention(8 heads, key_dim 32) self-attention on (16, 128, 256)
  sdpa               ops.dot_product_attention on query, key, value (16, 128, 8 heads, 32) (PyTorch:
                     F.scaled_dot_product_attention on (16, 8, 128, 32), its own layout)
  sdpa_causal        the same with is_causal=True

    PYTHONPATH=.dev python benchmarks/bench_layers.py [--rounds 3] [--threads 2] [--cases mha,conv3d]
        [--attention composed]   (lamina's attention from einsum/softmax, flash_attention=False,
                                  instead of the fused kernel: the figures before it)
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import alternate, median_ms, run_worker  # noqa: E402

CASES = ("conv2d_transpose", "conv1d_transpose", "conv3d", "mha", "sdpa", "sdpa_causal")
REPEATS = {"conv2d_transpose": 20, "conv1d_transpose": 30, "conv3d": 10, "mha": 15, "sdpa": 20, "sdpa_causal": 20}
SDPA_SHAPE = (16, 128, 8, 32)   # (batch, length, heads, depth)


def _input(case):
    rng = np.random.default_rng(0)
    if case.startswith("sdpa"):
        return [rng.standard_normal(SDPA_SHAPE).astype(np.float32) for _ in range(3)]
    shape = {"conv2d_transpose": (32, 14, 14, 64), "conv1d_transpose": (32, 128, 64),
             "conv3d": (8, 16, 16, 16, 16), "mha": (16, 128, 256)}[case]
    return rng.standard_normal(shape).astype(np.float32)


def _sdpa_lamina(case, flash):
    import lamina
    q, k, v = (lamina.convert_to_tensor(a) for a in _input(case))
    causal = case == "sdpa_causal"

    def fwd():
        lamina.ops.dot_product_attention(q, k, v, is_causal=causal, flash_attention=flash).numpy()

    def fwd_bwd():
        with lamina.GradientTape() as tape:
            for t in (q, k, v):
                tape.watch(t)
            y = lamina.ops.dot_product_attention(q, k, v, is_causal=causal, flash_attention=flash)
            loss = lamina.ops.sum(y * y)
        for g in tape.gradient(loss, [q, k, v]):
            g.numpy()
    return fwd, fwd_bwd


def _sdpa_torch(case):
    import torch
    import torch.nn.functional as F
    q, k, v = (torch.from_numpy(a.transpose(0, 2, 1, 3).copy()) for a in _input(case))
    causal = case == "sdpa_causal"

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def fwd_bwd():
        qr, kr, vr = (t.detach().requires_grad_(True) for t in (q, k, v))
        y = F.scaled_dot_product_attention(qr, kr, vr, is_causal=causal)
        (y * y).sum().backward()
    return fwd, fwd_bwd


def lamina_case(case, attention="fused"):
    flash = None if attention == "fused" else False
    if case.startswith("sdpa"):
        return _sdpa_lamina(case, flash)
    import lamina
    from lamina import layers
    x = lamina.convert_to_tensor(_input(case))
    layer = {"conv2d_transpose": lambda: layers.Conv2DTranspose(32, 3, strides=2, padding="same"),
             "conv1d_transpose": lambda: layers.Conv1DTranspose(64, 5, strides=2, padding="same"),
             "conv3d": lambda: layers.Conv3D(32, 3, padding="same"),
             "mha": lambda: layers.MultiHeadAttention(8, 32, flash_attention=flash)}[case]()
    call = (lambda: layer(x, x)) if case == "mha" else (lambda: layer(x))
    call()
    weights = layer.trainable_weights

    def fwd():
        call().numpy()

    def fwd_bwd():
        with lamina.GradientTape() as tape:
            tape.watch(x)
            y = call()
            loss = lamina.ops.sum(y * y)
        grads = tape.gradient(loss, [x] + weights)
        grads[0].numpy()
        for g in grads[1:]:
            g.numpy()
    return fwd, fwd_bwd


def torch_case(case):
    if case.startswith("sdpa"):
        return _sdpa_torch(case)
    import torch
    x_np = _input(case)
    if case == "conv2d_transpose":
        mod = torch.nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)
        x = torch.from_numpy(x_np.transpose(0, 3, 1, 2).copy())
    elif case == "conv1d_transpose":
        mod = torch.nn.ConvTranspose1d(64, 64, 5, stride=2, padding=2, output_padding=1)
        x = torch.from_numpy(x_np.transpose(0, 2, 1).copy())
    elif case == "conv3d":
        mod = torch.nn.Conv3d(16, 32, 3, padding=1)
        x = torch.from_numpy(x_np.transpose(0, 4, 1, 2, 3).copy())
    else:
        mod = torch.nn.MultiheadAttention(256, 8, batch_first=True)
        x = torch.from_numpy(x_np)
    call = (lambda: mod(x, x, x, need_weights=False)[0]) if case == "mha" else (lambda: mod(x))

    def fwd():
        with torch.no_grad():
            call()

    def fwd_bwd():
        xr = x.detach().requires_grad_(True)
        y = mod(xr, xr, xr, need_weights=False)[0] if case == "mha" else mod(xr)
        (y * y).sum().backward()
        mod.zero_grad(set_to_none=True)
    return fwd, fwd_bwd


def worker(lib, threads, cases, attention):
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
    out = {}
    for case in cases:
        fwd, fwd_bwd = lamina_case(case, attention) if lib == "lamina" else torch_case(case)
        out[case] = {"fwd_ms": median_ms(fwd, 3, REPEATS[case]), "ms": median_ms(fwd_bwd, 3, REPEATS[case])}
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--attention", choices=("fused", "composed"), default="fused",
                   help="lamina's attention (mha, sdpa*): the fused kernel, or composed (flash_attention=False)")
    a = p.parse_args()
    cases = a.cases.split(",")
    if a.worker:
        return worker(a.worker, a.threads, cases, a.attention)
    runs = alternate(a.rounds, lambda lib: run_worker(__file__, lib, a.threads,
                                                      ["--cases", a.cases, "--attention", a.attention]))
    print(f"forward / forward+backward, ms, median of {a.rounds} processes per library, {a.threads} threads, "
          f"lamina attention: {a.attention}")
    print(f"{'case':<18} {'lamina fwd':>11} {'torch fwd':>10} {'ratio':>6}   {'lamina f+b':>11} {'torch f+b':>10} "
          f"{'ratio':>6}")
    import statistics
    for case in cases:
        def med(lib, field):
            vals = [r[case][field] for r in runs.get(lib, []) if case in r]
            return statistics.median(vals) if vals else float("nan")
        lf, tf, lb, tb = med("lamina", "fwd_ms"), med("torch", "fwd_ms"), med("lamina", "ms"), med("torch", "ms")
        print(f"{case:<18} {lf:>11.2f} {tf:>10.2f} {tf / lf:>5.2f}x   {lb:>11.2f} {tb:>10.2f} {tb / lb:>5.2f}x")
    print("ratio = PyTorch time / lamina time (> 1: lamina faster)")


if __name__ == "__main__":
    main()

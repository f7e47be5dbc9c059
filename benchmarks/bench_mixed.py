"""Mixed precision on the CPU: bfloat16 against float32, lamina against PyTorch, same run.

Cases:
  gemm     C = A @ B at 1024^3, 2048^3, 128x3136x1024 and 64x784x1024 (M x K x N), GFLOP/s, in
           float32 and in bfloat16 (lamina: ops.matmul on bfloat16 tensors: AMX tiles where the CPU has
           them, else the AVX512-BF16 kernel;
           PyTorch: torch.matmul on bfloat16 tensors, oneDNN)
  mlp      training step of 784-2048-2048-10 (ReLU, Adam, batch 256), samples/s: float32, and
           mixed_bfloat16 (lamina: mixed_precision.set_global_policy("mixed_bfloat16") and
           train_on_batch; PyTorch: its hand-written loop under torch.autocast("cpu", bfloat16))
  convnet  the MNIST convnet of bench_training.py (batch 128), the same two ways
  resblock a residual block with batch normalization on 32x32x16 inputs, batch 64: Conv3x3x32-BN-ReLU,
           Conv3x3x32-BN, added to the first, ReLU, global average pooling, Dense(10)
  lstm     LSTM(256) over 35 steps of 128 features, then Dense(10), batch 64 (bench_rnn.py's size)
  transformer  one encoder block on 128 steps of 256 features, batch 32: MultiHeadAttention (4 heads of
           64) + residual + LayerNormalization, Dense(1024, relu) + Dense(256) + residual +
           LayerNormalization, average over the steps, Dense(10)

Each (library, precision) runs in its own process, alternating, each process warms up and takes
the median of its steps; the table shows the median over processes. `--libs` may add
`lamina-avx512bf16` (or `lamina-widened`): lamina with its bfloat16 GEMM held to that path, for
the AMX kernel's gain on CPUs that have AMX (lamina's default there).

    PYTHONPATH=.dev python benchmarks/bench_mixed.py                     # 2 threads, 3 rounds
    PYTHONPATH=.dev python benchmarks/bench_mixed.py --cases gemm --threads 1 --rounds 5
    PYTHONPATH=.dev python benchmarks/bench_mixed.py --libs lamina lamina-avx512bf16 torch
"""
import argparse
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median_ms, run_worker  # noqa: E402

GEMMS = [(1024, 1024, 1024), (2048, 2048, 2048), (128, 3136, 1024), (64, 784, 1024)]
CASES = ("gemm", "mlp", "convnet", "resblock", "lstm", "transformer")


# ---- workers ---------------------------------------------------------------------------------

def _lamina_gemm(precision, m, k, n):
    import lamina
    from lamina import ops
    rng = np.random.default_rng(0)
    a = lamina.convert_to_tensor(rng.normal(size=(m, k)).astype(np.float32))
    b = lamina.convert_to_tensor(rng.normal(size=(k, n)).astype(np.float32))
    if precision == "bfloat16":
        a, b = ops.cast(a, "bfloat16"), ops.cast(b, "bfloat16")
    return median_ms(lambda: ops.matmul(a, b), 3, 9)  # cpu:0 runs kernels on the calling thread


def _torch_gemm(precision, m, k, n):
    import torch
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(m, k)).astype(np.float32))
    b = torch.from_numpy(rng.normal(size=(k, n)).astype(np.float32))
    if precision == "bfloat16":
        a, b = a.bfloat16(), b.bfloat16()
    return median_ms(lambda: torch.matmul(a, b), 3, 9)


def _data(case, batch):
    rng = np.random.default_rng(0)
    shape = {"mlp": (batch, 784), "resblock": (batch, 32, 32, 16), "lstm": (batch, 35, 128),
             "transformer": (batch, 128, 256)}.get(case, (batch, 28, 28, 1))
    return rng.random(shape, dtype=np.float32), rng.integers(0, 10, batch).astype(np.int64)


def _lamina_train(case, precision, batch, steps):
    import lamina
    from lamina import layers as L
    if precision == "bfloat16":
        lamina.mixed_precision.set_global_policy("mixed_bfloat16")
    if case == "mlp":
        model = lamina.Sequential([lamina.Input((784,)), L.Dense(2048, activation="relu"),
                                   L.Dense(2048, activation="relu"), L.Dense(10, dtype="float32")])
    elif case == "resblock":
        inp = lamina.Input((32, 32, 16))
        h = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(32, 3, padding="same")(inp)))
        r = L.BatchNormalization()(L.Conv2D(32, 3, padding="same")(h))
        h = L.Activation("relu")(L.Add()([h, r]))
        model = lamina.Model(inp, L.Dense(10, dtype="float32")(L.GlobalAveragePooling2D()(h)))
    elif case == "lstm":
        model = lamina.Sequential([lamina.Input((35, 128)), L.LSTM(256), L.Dense(10, dtype="float32")])
    elif case == "transformer":
        inp = lamina.Input((128, 256))
        h = L.LayerNormalization()(L.Add()([inp, L.MultiHeadAttention(4, 64)(inp, inp)]))
        f = L.Dense(256)(L.Dense(1024, activation="relu")(h))
        h = L.LayerNormalization()(L.Add()([h, f]))
        model = lamina.Model(inp, L.Dense(10, dtype="float32")(L.GlobalAveragePooling1D()(h)))
    else:
        model = lamina.Sequential([lamina.Input((28, 28, 1)), L.Conv2D(32, 5, padding="same", activation="relu"),
                                   L.MaxPooling2D(2), L.Conv2D(64, 5, padding="same", activation="relu"),
                                   L.MaxPooling2D(2), L.Flatten(), L.Dense(1024, activation="relu"),
                                   L.Dense(10, dtype="float32")])
    model.compile(optimizer="adam", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(case, batch)
    return median_ms(lambda: model.train_on_batch(x, y), 5, steps)


def _torch_train(case, precision, batch, steps):
    import torch
    import torch.nn as nn
    if case == "mlp":
        model = nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))
    elif case == "resblock":
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.c1, self.b1 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
                self.c2, self.b2 = nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
                self.fc = nn.Linear(32, 10)

            def forward(self, x):
                h = torch.relu(self.b1(self.c1(x)))
                h = torch.relu(h + self.b2(self.c2(h)))
                return self.fc(h.mean(dim=(2, 3)))
        model = Block()
    elif case == "transformer":
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.att = nn.MultiheadAttention(256, 4, batch_first=True)
                self.n1, self.n2 = nn.LayerNorm(256, eps=1e-3), nn.LayerNorm(256, eps=1e-3)
                self.f1, self.f2, self.fc = nn.Linear(256, 1024), nn.Linear(1024, 256), nn.Linear(256, 10)

            def forward(self, x):
                h = self.n1(x + self.att(x, x, x, need_weights=False)[0])
                h = self.n2(h + self.f2(torch.relu(self.f1(h))))
                return self.fc(h.mean(dim=1))
        model = Block()
    elif case == "lstm":
        class Recurrent(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm, self.fc = nn.LSTM(128, 256, batch_first=True), nn.Linear(256, 10)

            def forward(self, x):
                return self.fc(self.lstm(x)[0][:, -1])
        model = Recurrent()
    else:
        model = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(7 * 7 * 64, 1024), nn.ReLU(), nn.Linear(1024, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x, y = _data(case, batch)
    flat = case in ("mlp", "lstm", "transformer")
    xt = torch.from_numpy(x if flat else x.transpose(0, 3, 1, 2).copy())
    if not flat:
        model = model.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    yt = torch.from_numpy(y)

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()
    return median_ms(step, 5, steps)


def worker(lib, threads, cases):
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
    elif lib != "lamina":  # lamina-<path>: the bfloat16 GEMM held to one path
        from lamina.backend import _cpu
        path = lib.split("-", 1)[1]
        _cpu._set_bf16_gemm({"amx": 2, "avx512bf16": 1, "widened": 0}[path])
        if _cpu.bf16_gemm_path() != path:
            raise SystemExit(f"this CPU cannot run the {path} bfloat16 GEMM")
    out = {}
    for case in cases:
        for precision in ("float32", "bfloat16"):
            if case == "gemm":
                for m, k, n in GEMMS:
                    fn = _torch_gemm if lib == "torch" else _lamina_gemm
                    ms = fn(precision, m, k, n)
                    out[f"gemm {m}x{k}x{n} {precision}"] = {"ms": ms, "rate": 2 * m * k * n / ms / 1e6}
            else:
                batch, steps = {"mlp": (256, 20), "convnet": (128, 10), "resblock": (64, 10), "lstm": (64, 10),
                                 "transformer": (32, 10)}[case]
                fn = _torch_train if lib == "torch" else _lamina_train
                ms = fn(case, precision, batch, steps)
                out[f"{case} {precision}"] = {"ms": ms, "rate": batch / ms * 1e3}
    print(json.dumps(out))


# ---- driver ----------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--libs", nargs="+", default=["lamina", "torch"],
                   choices=["lamina", "torch", "lamina-amx", "lamina-avx512bf16", "lamina-widened"])
    p.add_argument("rest", nargs="*")
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.threads, a.rest or a.cases)
    runs = {lib: [] for lib in dict.fromkeys(["lamina", "torch"] + a.libs)}
    for r in range(a.rounds):
        for lib in runs:
            # one process per case and precision pair keeps each run's memory and thread pools apart
            for case in a.cases:
                res = run_worker(__file__, lib, a.threads, [case])
                if res is not None:
                    runs[lib].append(res)
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    keys = []
    for res in runs["lamina"] + runs["torch"]:
        keys += [k for k in res if k not in keys]
    extra = [lib for lib in runs if lib not in ("lamina", "torch")]
    print(f"threads: {a.threads}; rates are GFLOP/s (gemm) or samples/s (training), medians over {a.rounds} "
          "processes")
    print(f"{'case':34s} {'lamina':>10s} {'torch':>10s} {'lamina/torch':>13s} {'lamina bf16/f32':>16s}"
          + "".join(f" {lib:>18s}" for lib in extra))
    for k in keys:
        med = {lib: statistics.median([r[k]["rate"] for r in runs[lib] if k in r]) if any(k in r for r in runs[lib])
               else float("nan") for lib in runs}
        speedup = ""
        if k.endswith("bfloat16"):
            f32 = k[:-len("bfloat16")] + "float32"
            base = [r[f32]["rate"] for r in runs["lamina"] if f32 in r]
            if base:
                speedup = f"{med['lamina'] / statistics.median(base):.2f}x"
        print(f"{k:34s} {med['lamina']:10.1f} {med['torch']:10.1f} {med['lamina'] / med['torch']:12.2f}x "
              f"{speedup:>16s}" + "".join(f" {med[lib]:18.1f}" for lib in extra))


if __name__ == "__main__":
    main()

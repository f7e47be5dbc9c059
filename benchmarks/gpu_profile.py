"""Where a training step's time goes on a device: the bench_gpu.py convnet (or --model lstm), for
a first look on a lent GPU before any tuning.

Prints, for --steps steps after --warmup steps:
  - wall milliseconds per step (median; `train_on_batch` returns the loss, so each step ends
    with the host waiting for the device, as PyTorch's `loss.item()` does);
  - kernel calls per step by name, and the calls that ran on host copies (fallbacks); on the
    CPU a replayed step runs as one native program (`run`), whose kernels are not counted;
  - the host's Python profile of the same steps (cProfile, top functions by own time): if the
    device is fast and the host busy, the step is host-bound and these are the costs to cut.

    PYTHONPATH=.dev python benchmarks/gpu_profile.py --device gpu:0
    PYTHONPATH=.dev python benchmarks/gpu_profile.py --device cpu:0 --batch 16 --steps 5   # checks the script
    LAMINA_CUDA_EMULATOR=1 PYTHONPATH=.dev python benchmarks/gpu_profile.py --batch 8 --steps 2
        # on the CUDA emulator: also launches, host waits and copies a step (its times mean nothing)
"""
import argparse
import cProfile
import collections
import io
import pstats
import statistics
import time

import numpy as np


def build(lamina, model_name, batch, rng):
    L = lamina.layers
    if model_name == "convnet":
        model = lamina.Sequential([lamina.Input(shape=(28, 28, 1)),
                                   L.Conv2D(32, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
                                   L.Conv2D(64, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
                                   L.Flatten(), L.Dense(1024, activation="relu"), L.Dropout(0.5), L.Dense(10)])
        x = rng.random((batch, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, batch)
    else:  # lstm: bench_gpu.py's LSTM case as a model
        model = lamina.Sequential([lamina.Input(shape=(35, 128)), L.LSTM(256), L.Dense(10)])
        x = rng.normal(size=(batch, 35, 128)).astype(np.float32)
        y = rng.integers(0, 10, batch)
    model.compile(optimizer=lamina.optimizers.Adam(1e-3),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, lamina.convert_to_tensor(x), lamina.convert_to_tensor(y)


def count_calls(kernels, names):
    """Wraps each kernel of the device's table with a call counter (before the model is built, so
    recorded steps bind the wrappers). Returns the counter."""
    counts = collections.Counter()
    for name in names:
        fn = getattr(kernels, name, None)
        if fn is None or not callable(fn):
            continue

        def wrapped(*a, _fn=fn, _name=name, **k):
            counts[_name] += 1
            return _fn(*a, **k)
        setattr(kernels, name, wrapped)
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="gpu:0")
    ap.add_argument("--model", choices=["convnet", "lstm"], default="convnet")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=25, help="profile rows to print")
    args = ap.parse_args()

    import importlib

    import lamina
    device_mod = importlib.import_module("lamina.backend.device")

    dev = lamina.get_device(args.device)
    counts = count_calls(dev.kernels, device_mod.KERNEL_TABLE)
    with lamina.device(args.device):
        model, x, y = build(lamina, args.model, args.batch, np.random.default_rng(0))
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
        counts.clear()
        emulated = dev.kind == "gpu" and device_mod.CUDA_EMULATED
        if emulated:
            device_mod.cuda_emulator_stats(reset=True)
        fallbacks_before = dict(getattr(dev.kernels, "fallbacks", {}))
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            model.train_on_batch(x, y)
            times.append((time.perf_counter() - t0) * 1e3)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        prof.disable()

    steps = args.steps * 2  # the counted steps: timed and profiled
    print(f"# {args.model} on {args.device}, batch {args.batch}: {statistics.median(times):.2f} ms a step "
          f"(median of {args.steps}; min {min(times):.2f}, max {max(times):.2f}), "
          f"{args.batch / statistics.median(times) * 1e3:.0f} samples/s")
    total = sum(counts.values())
    print(f"\nkernel calls a step: {total / steps:.1f}")
    for name, n in counts.most_common():
        print(f"  {name:28s} {n / steps:6.1f}")
    if emulated:  # what the device was asked to do (the emulator's counters; its times mean nothing)
        st = device_mod.cuda_emulator_stats()
        print("CUDA emulator, a step: " + ", ".join(f"{k} {v / steps:.1f}" for k, v in st.items()))
    fallbacks = {k: v - fallbacks_before.get(k, 0) for k, v in getattr(dev.kernels, "fallbacks", {}).items()}
    fallbacks = {k: v for k, v in fallbacks.items() if v}
    print("\nhost fallbacks a step:", {k: round(v / steps, 1) for k, v in sorted(fallbacks.items())} or "none")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
    print(f"\nhost profile of {args.steps} steps (cProfile, by own time; it slows Python, so read the shares):")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:20000])


if __name__ == "__main__":
    main()

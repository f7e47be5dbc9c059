"""Training throughput: lamina vs PyTorch (hand-written loop) vs Keras, same models, same batch.

Models (28x28 inputs, batch 128 unless noted, Adam):
  convnet  Deep MNIST for Experts: Conv5x5x32-pool-Conv5x5x64-pool-Dense1024-Dropout0.5-Dense10
  mlp      784-1024-10
  softmax  softmax regression 784-10
  tiny     Dense(10) on 784 inputs, batch 32 (per-step overhead): train_on_batch per step
  tinyfit  the same model trained by fit (12,800 rows, batch 32: 400 steps an epoch), time per step;
           PyTorch runs its hand-written loop over the same batches

Each library runs in its own process (thread pools of different runtimes fight when mixed),
alternating lamina, torch, keras, lamina, ...; each process warms up, then times steps; the
figure is the median over processes of each process's median step time.

    PYTHONPATH=.dev python benchmarks/bench_training.py                 # all models
    PYTHONPATH=.dev python benchmarks/bench_training.py --models tiny --rounds 3
    PYTHONPATH=.dev python benchmarks/bench_training.py --accuracy     # 2 epochs on real MNIST
    PYTHONPATH=.dev python benchmarks/bench_training.py --load --models convnet --libs lamina torch

--load: every worker runs twice, idle and then beside one busy process (a Python spin loop pinned
to the last core, started before the worker and killed after it), alternating as usual; the
table then shows each library's idle and loaded step times, the share of its idle throughput it
keeps under load, and the ratio to PyTorch under the same load.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = {"convnet": 128, "mlp": 128, "softmax": 128, "tiny": 32, "tinyfit": 32}
STEPS = {"convnet": 12, "mlp": 40, "softmax": 100, "tiny": 200, "tinyfit": 400}


def _data(model, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    return x, y


# ---- workers ---------------------------------------------------------------------------------

def lamina_model(name, keras):
    L = keras.layers
    if name == "convnet":
        return keras.Sequential([keras.Input(shape=(28, 28, 1)),
                                 L.Conv2D(32, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
                                 L.Conv2D(64, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
                                 L.Flatten(), L.Dense(1024, activation="relu"), L.Dropout(0.5), L.Dense(10)])
    if name == "mlp":
        return keras.Sequential([keras.Input(shape=(28, 28, 1)), L.Flatten(), L.Dense(1024, activation="relu"),
                                 L.Dense(10)])
    return keras.Sequential([keras.Input(shape=(28, 28, 1)), L.Flatten(), L.Dense(10)])


def run_keras_like(lib, name, batch, steps):
    if lib == "lamina":
        import lamina as keras
    else:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras
    model = lamina_model(name, keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if name == "tinyfit":  # fit over `steps` batches; the figure is an epoch's time per step
        x, y = _data(name, batch * steps)
        model.fit(x, y, batch_size=batch, epochs=2, verbose=0, shuffle=False)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            times.append((time.perf_counter() - t) / steps)
        return times
    x, y = _data(name, batch)
    for _ in range(3):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    return times


def run_torch(name, batch, steps):
    import torch
    import torch.nn as nn
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if name == "convnet":
        model = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))
    elif name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 10))
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    lossf = nn.CrossEntropyLoss()
    x, y = _data(name, batch)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def worker(lib, name):
    batch, steps = MODELS[name], STEPS[name]
    times = run_torch(name, batch, steps) if lib == "torch" else run_keras_like(lib, name, batch, steps)
    med = statistics.median(times)
    print(json.dumps({"lib": lib, "model": name, "step_ms": med * 1e3, "samples_per_s": batch / med}))


# ---- accuracy run ------------------------------------------------------------------------------

def accuracy_run(epochs=2, seed=None):
    import lamina as keras
    if seed is not None:
        keras.utils.set_random_seed(seed)
    (xt, yt), (xs, ys) = keras.datasets.mnist.load_data()
    xt = (xt.astype(np.float32) / 255.0)[..., None]
    xs = (xs.astype(np.float32) / 255.0)[..., None]
    model = lamina_model("convnet", keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t = time.time()
    model.fit(xt, yt.astype(np.int64), batch_size=128, epochs=epochs, verbose=2)
    loss, acc = model.evaluate(xs, ys.astype(np.int64), batch_size=1000, verbose=0)
    print(json.dumps({"model": "convnet", "epochs": epochs, "seed": seed, "test_accuracy": acc,
                      "seconds": time.time() - t}))


# ---- driver ------------------------------------------------------------------------------------

def available(lib):
    mod = {"torch": "torch", "keras": "keras", "lamina": "lamina"}[lib]
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "jax"))
    r = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, env=env)
    return r.returncode == 0


def _start_load():
    """One busy process on the last core (the other processes may still use every core)."""
    code = ("import os\n"
            "os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})\n"
            "while True:\n    pass\n")
    return subprocess.Popen([sys.executable, "-c", code])


def _run_worker(lib, name, env, load):
    busy = _start_load() if load else None
    try:
        if busy is not None:
            time.sleep(0.3)  # the spin loop is running before the worker starts
        r = subprocess.run([sys.executable, __file__, "--worker", lib, name], capture_output=True, text=True, env=env)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if r.returncode != 0:
        print(f"  {lib} {name} failed:\n{r.stderr[-2000:]}")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["step_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=2, metavar=("LIB", "MODEL"))
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--libs", nargs="*", default=["lamina", "torch", "keras"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--load", action="store_true", help="also time each worker beside one busy process on one core")
    ap.add_argument("--seed", type=int, default=None, help="with --accuracy: lamina.utils.set_random_seed(seed)")
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.accuracy:
        accuracy_run(seed=args.seed)
        return
    env = dict(os.environ)
    for k in ("LAMINA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BENCH_THREADS"):
        env[k] = str(args.threads)
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}"
    env.setdefault("KERAS_BACKEND", "jax")
    libs = [l for l in args.libs if available(l)]
    print(f"libraries: {', '.join(libs)}; threads: {args.threads}; rounds: {args.rounds}")
    results = {}
    modes = ("idle", "load") if args.load else ("idle",)
    for name in args.models:
        for _ in range(args.rounds):
            for lib in libs:
                for mode in modes:
                    ms = _run_worker(lib, name, env, mode == "load")
                    if ms is not None:
                        results.setdefault((name, lib, mode), []).append(ms)
    med = {k: statistics.median(v) for k, v in results.items()}
    if not args.load:
        print(f"\n{'model':<9} {'lib':<7} {'step ms':>9} {'samples/s':>10} {'vs torch':>9}")
    else:
        print(f"\n{'model':<9} {'lib':<7} {'idle ms':>9} {'load ms':>9} {'load samples/s':>15} "
              f"{'kept of idle':>13} {'vs torch (idle)':>16} {'vs torch (load)':>16}")
    for name in args.models:
        for lib in libs:
            m = med.get((name, lib, "idle"))
            if m is None:
                continue
            ref = med.get((name, "torch", "idle"))
            ratio = f"{ref / m:.2f}x" if ref else "-"
            if not args.load:
                print(f"{name:<9} {lib:<7} {m:>9.2f} {MODELS[name] / m * 1e3:>10.0f} {ratio:>9}")
                continue
            ml, refl = med.get((name, lib, "load")), med.get((name, "torch", "load"))
            if ml is None:
                continue
            ratio_l = f"{refl / ml:.2f}x" if refl else "-"
            print(f"{name:<9} {lib:<7} {m:>9.2f} {ml:>9.2f} {MODELS[name] / ml * 1e3:>15.0f} {m / ml:>12.2f}x "
                  f"{ratio:>16} {ratio_l:>16}")


if __name__ == "__main__":
    main()

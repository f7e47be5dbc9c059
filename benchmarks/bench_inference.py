"""Batch-of-one inference: the time of one call, lamina vs PyTorch (issue 14's per-call target:
`model(x)` and `predict_on_batch` at most 0.5x PyTorch's `module(x)` under `torch.no_grad()`).

Models (one row of 784 float32 inputs), each a Sequential model in both libraries:
  tiny  Dense(10)                          (torch: Sequential(Linear(784, 10)); also timed: the
                                            Linear alone, PyTorch's cheapest way to the same result)
  mlp   Dense(1024, relu) - Dense(10)      (torch: Sequential(Linear, ReLU, Linear)), the training MLP's shape

lamina: `model(x)` on a tensor (x converted once) and `predict_on_batch(x)` on a numpy array
(numpy in, numpy out). PyTorch: `module(x)` on a tensor under `torch.no_grad()`, and
`module(torch.from_numpy(x)).numpy()` (numpy in, numpy out, as predict_on_batch). Each library
runs in its own process, alternating lamina, torch, lamina, ...; each process warms up, then
times `--calls` calls `--repeats` times; the figure is the median over processes of each
process's median time per call.

    PYTHONPATH=.dev python benchmarks/bench_inference.py --rounds 5
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = ("tiny", "mlp")


def _time(fn, calls, repeats):
    for _ in range(max(calls // 4, 200)):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls * 1e6)
    return statistics.median(times)


def worker(lib, model, calls, repeats, threads):
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    out = {}
    if lib == "lamina":
        import lamina  # threads: LAMINA_NUM_THREADS, set by the parent
        L = lamina.layers
        body = [L.Dense(10)] if model == "tiny" else [L.Dense(1024, activation="relu"), L.Dense(10)]
        m = lamina.Sequential([lamina.Input((784,))] + body)
        xt = lamina.ops.convert_to_tensor(x)
        out["call"] = _time(lambda: m(xt), calls, repeats)
        out["numpy"] = _time(lambda: m.predict_on_batch(x), calls, repeats)
        np.testing.assert_allclose(m.predict_on_batch(x), m(xt).numpy(), rtol=1e-6)
    else:
        import torch
        torch.set_num_threads(threads)
        nn = torch.nn
        layers = [nn.Linear(784, 10)] if model == "tiny" else [nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 10)]
        m = nn.Sequential(*layers)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            out["call"] = _time(lambda: m(xt), calls, repeats)
            out["numpy"] = _time(lambda: m(torch.from_numpy(x)).numpy(), calls, repeats)
            if model == "tiny":
                out["bare"] = _time(lambda: layers[0](xt), calls, repeats)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--rounds", type=int, default=3, help="processes per library and model, alternating")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", nargs=2, metavar=("LIB", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.calls, args.repeats, args.threads)))
        return
    env = dict(os.environ, LAMINA_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS="1")
    results = {}
    for model in args.models:
        for _ in range(args.rounds):
            for lib in ("lamina", "torch"):
                cmd = [sys.executable, __file__, "--worker", lib, model, "--calls", str(args.calls),
                       "--repeats", str(args.repeats), "--threads", str(args.threads)]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if res.returncode:
                    sys.exit(f"{lib} {model} failed:\n{res.stderr[-3000:]}")
                for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items():
                    results.setdefault((model, lib, k), []).append(v)
    print(f"batch of one, {args.threads} threads, median over {args.rounds} processes each (us per call)")
    print("| model | lamina model(x) | lamina predict_on_batch | PyTorch module(x) | PyTorch from_numpy+module+numpy "
          "| model(x) / module(x) | predict_on_batch / module(x) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model in args.models:
        med = {(lib, k): statistics.median(v) for (m, lib, k), v in results.items() if m == model}
        t = med[("torch", "call")]
        print(f"| {model} | {med[('lamina', 'call')]:.2f} | {med[('lamina', 'numpy')]:.2f} | {t:.2f} | "
              f"{med[('torch', 'numpy')]:.2f} | {med[('lamina', 'call')] / t:.2f}x | {med[('lamina', 'numpy')] / t:.2f}x |")
        if ("torch", "bare") in med:
            b = med[("torch", "bare")]
            print(f"| {model}, PyTorch's Linear alone | | | {b:.2f} | | {med[('lamina', 'call')] / b:.2f}x | "
                  f"{med[('lamina', 'numpy')] / b:.2f}x |")


if __name__ == "__main__":
    main()

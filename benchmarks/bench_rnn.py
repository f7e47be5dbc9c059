"""Recurrent speed: lamina's fused LSTM vs PyTorch's torch.nn.LSTM (batch_first).

    LSTM: batch 64, 35 steps, input 128, hidden 256 (the PTB language model's shape)
      forward        inference, no gradients
      fwd+bwd        forward and backward with the gradients of the inputs and of every weight

lamina runs `ops.lstm` (csrc/cpu/rnn.cpp: one input-projection GEMM, one recurrent GEMM per step,
fused gate maths; the backward pass one GEMM per step and three big weight/input GEMMs); torch
runs `torch.nn.LSTM`, which on CPU uses oneDNN's LSTM when available.

Each library runs in its own process (they would fight over the cores in one), alternating
lamina, torch, lamina, torch ...; each process warms up, then times `--repeats` iterations and
reports their median. The table shows the median over rounds, and the ratio torch / lamina
(>= 1.0 means lamina is at least as fast). Both use `--threads` threads (default 2): torch through
torch.set_num_threads, lamina through LAMINA_NUM_THREADS.

`--omp-wait passive` runs both workers with OMP_WAIT_POLICY=passive (both libraries use GNU
OpenMP): on a machine whose cores are shared with other busy processes, spinning OpenMP threads
compete with the threads doing the work, and the default (spinning) policy then makes 2-thread
timings of either library vary by 2-5x between runs.

    PYTHONPATH=.dev python3 benchmarks/bench_rnn.py [--rounds 2] [--repeats 10] [--threads 2]
                                                    [--omp-wait default|passive|active]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

LSTM_CASE = dict(batch=64, steps=35, features=128, units=256)
VARIANTS = ["forward", "fwd+bwd"]


def _time(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


# ---- LSTM ----------------------------------------------------------------------------------------

def lstm_lamina(args):
    import numpy as np
    import lamina
    from lamina import ops
    c = LSTM_CASE
    B, T, F, U = c["batch"], c["steps"], c["features"], c["units"]
    rng = np.random.default_rng(0)
    s = 1.0 / np.sqrt(U)
    x = lamina.Variable(rng.standard_normal((B, T, F)).astype(np.float32))
    K = lamina.Variable(rng.uniform(-s, s, (F, 4 * U)).astype(np.float32))
    R = lamina.Variable(rng.uniform(-s, s, (U, 4 * U)).astype(np.float32))
    b = lamina.Variable(rng.uniform(-s, s, (4 * U,)).astype(np.float32))
    g = lamina.convert_to_tensor(rng.standard_normal((B, T, U)).astype(np.float32))
    x_const = lamina.convert_to_tensor(x.numpy())

    def fwd():
        ops.lstm(x_const, None, None, K, R, b)

    def step():
        with lamina.GradientTape() as tape:
            y, _, _ = ops.lstm(x, None, None, K, R, b)
        tape.gradient(y, [x, K, R, b], output_gradients=g)

    return {"lstm|forward": dict(ms=_time(fwd, args.warmup, args.repeats)),
            "lstm|fwd+bwd": dict(ms=_time(step, args.warmup, args.repeats))}


def lstm_torch(args):
    import torch
    c = LSTM_CASE
    B, T, F, U = c["batch"], c["steps"], c["features"], c["units"]
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(F, U, batch_first=True)
    x = torch.randn(B, T, F)
    x_req = x.clone().requires_grad_()
    g = torch.randn(B, T, U)
    params = list(lstm.parameters())

    def fwd():
        with torch.no_grad():
            lstm(x)

    def step():
        y, _ = lstm(x_req)
        torch.autograd.grad(y, [x_req] + params, g)

    return {"lstm|forward": dict(ms=_time(fwd, args.warmup, args.repeats)),
            "lstm|fwd+bwd": dict(ms=_time(step, args.warmup, args.repeats))}


# ---- beam search -----------------------------------------------------------------------------------
# (written later: a seq2seq decoder's beam search, lamina vs a reference. Add its worker functions
# here, `beam_lamina(args)` / `beam_torch(args)` returning {"beam|<variant>": {"ms": ...}}, list them
# in WORKERS below and its rows in SECTIONS; the driver and the table need no other change.)


# ---- driver ----------------------------------------------------------------------------------------

WORKERS = {"lamina": [lstm_lamina], "torch": [lstm_torch]}
SECTIONS = [("lstm", "LSTM, batch {batch}, {steps} steps, input {features}, hidden {units}".format(**LSTM_CASE),
             VARIANTS)]


def worker(lib, args):
    if lib == "torch":
        import torch
        torch.set_num_threads(args.threads)
    out = {}
    for fn in WORKERS[lib]:
        out.update(fn(args))
    return out


def run_worker(lib, args):
    env = dict(os.environ)
    env["LAMINA_NUM_THREADS"] = str(args.threads)
    env["OMP_NUM_THREADS"] = str(args.threads)
    if args.omp_wait != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        if lib == "torch" and "No module named 'torch'" in r.stderr:
            return None
        raise RuntimeError(f"{lib} worker failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--omp-wait", choices=["default", "passive", "active"], default="default",
                    help="OMP_WAIT_POLICY for both workers (default: the OpenMP runtime's own)")
    ap.add_argument("--worker", choices=["lamina", "torch"])
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    runs = {"lamina": [], "torch": []}
    for r in range(args.rounds):
        for lib in ("lamina", "torch"):
            res = run_worker(lib, args)
            if res is not None:
                runs[lib].append(res)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    if not runs["torch"]:
        print("PyTorch is not installed: showing lamina only\n")

    def med(lib, key):
        vals = [run[key]["ms"] for run in runs[lib] if key in run]
        return statistics.median(vals) if vals else float("nan")

    wait = "" if args.omp_wait == "default" else f", OMP_WAIT_POLICY={args.omp_wait}"
    print(f"{args.threads} threads{wait}, median of {args.rounds} rounds x {args.repeats} repeats (ms)")
    hdr = f"{'variant':12} {'lamina':>9} {'torch':>9} {'torch/lamina':>13}"
    for key, title, variants in SECTIONS:
        print(f"\n{title}")
        print(hdr)
        print("-" * len(hdr))
        for v in variants:
            lm, tm = med("lamina", f"{key}|{v}"), med("torch", f"{key}|{v}")
            print(f"{v:12} {lm:9.2f} {tm:9.2f} {tm / lm:12.2f}x")


if __name__ == "__main__":
    main()

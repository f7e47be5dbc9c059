"""Parallel training speed: a 2-stage pipeline on two CPU devices against one device, and (when
mpi4py is installed) data parallelism over 2 MPI ranks and all-reduce against torch.distributed.

Pipeline. The seeds' deep LSTM language model (embedding, 4 LSTM layers, softmax over the
vocabulary; embedding width = LSTM width and a 500-word vocabulary: the second stage, with the
softmax layer and the loss, does about 54% of the work) is trained with `fit`, 4 batches (steps)
per call, timed per step. Three
configurations, each in its own process, alternating, per-step medians after warm-up:
  one device, 1 core      every layer on cpu:0, LAMINA_NUM_THREADS=1
  one device, 2 cores     every layer on cpu:0, LAMINA_NUM_THREADS=2
  pipeline 2 x 1 core     embedding + LSTM 1-2 on cpu:0, LSTM 3-4 + softmax on cpu:1, one core
                          each (lamina.config.set_cpu_threads_per_device(1)), fit(micro_batches=M)
It prints `pipeline speedup X.XX` (one 1-core device's step time / the pipeline's), the measured
bubble -- the share of the step the two devices' workers sat idle (from their busy time,
`Device.stats()["busy_seconds"]`) -- beside GPipe's (K-1)/(M+K-1) for K = 2 stages, and what was
lost against a perfect split of the 1-core work, 1 - T1 / (2 Tpipe): the bubble plus the extra
cost of the work itself when split (smaller GEMMs per micro-batch, two busy cores sharing
caches and memory).
`--micro` lists the M values to try.

MPI (benchmarks/bench_parallel_mpi.py, run as a separate script under mpiexec): 2-rank data
parallelism against 1 rank, and all-reduce of 100 MB between 2 local ranks against
torch.distributed with gloo.

    PYTHONPATH=.dev python3 benchmarks/bench_parallel.py [--rounds 3] [--repeats 8] [--micro 2,4,8]
                                                         [--batch 256] [--units 256] [--no-mpi]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import median_ms

VOCAB, STEPS = 500, 20
STEPS_PER_CALL = 4  # training steps per fit call (one epoch of 4 batches)


def build_mlp(units, split):
    import lamina
    from lamina import layers
    inp = lamina.Input((units,))
    h = inp
    for i in range(8):
        with lamina.device("cpu:1" if split and i >= 4 else "cpu:0"):
            h = layers.Dense(units, activation="relu")(h)
    with lamina.device("cpu:1" if split else "cpu:0"):
        out = layers.Dense(10)(h)
    model = lamina.Model(inp, out)
    model.compile(optimizer=lamina.optimizers.SGD(0.01),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def build(units, split):
    import lamina
    from lamina import layers
    inp = lamina.Input((STEPS,), dtype="int32")
    first, second = ("cpu:0", "cpu:1") if split else ("cpu:0", "cpu:0")
    with lamina.device(first):
        h = layers.Embedding(VOCAB, units)(inp)
        h = layers.LSTM(units, return_sequences=True)(h)
        h = layers.LSTM(units, return_sequences=True)(h)
    with lamina.device(second):
        h = layers.LSTM(units, return_sequences=True)(h)
        h = layers.LSTM(units, return_sequences=True)(h)
        out = layers.Dense(VOCAB)(h)
    model = lamina.Model(inp, out)
    model.compile(optimizer=lamina.optimizers.SGD(0.1),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def worker(args):
    import numpy as np
    import lamina
    if args.config == "pipeline":
        lamina.config.set_cpu_threads_per_device(1)
    rng = np.random.default_rng(0)
    if args.model == "mlp":
        x = rng.standard_normal((args.batch, args.units)).astype(np.float32)
        y = rng.integers(0, 10, size=(args.batch,)).astype(np.int32)
        model = build_mlp(args.units, args.config == "pipeline")
    else:
        x = rng.integers(0, VOCAB, size=(args.batch, STEPS)).astype(np.int32)
        y = rng.integers(0, VOCAB, size=(args.batch, STEPS)).astype(np.int32)
        model = build(args.units, args.config == "pipeline")
    kwargs = {"micro_batches": args.m} if args.config == "pipeline" else {}

    # one `fit` call runs STEPS_PER_CALL batches (as a training epoch does: the host queues the next
    # step while the devices finish this one); the figure is per step
    batch = len(x)
    xs, ys = np.concatenate([x] * STEPS_PER_CALL), np.concatenate([y] * STEPS_PER_CALL)

    def step():
        model.fit(xs, ys, batch_size=batch, epochs=1, shuffle=False, verbose=0, **kwargs)
    devs = [lamina.get_device("cpu:0"), lamina.get_device("cpu:1")]
    mark = {}

    def start():
        mark["busy"] = [d.stats()["busy_seconds"] for d in devs]
        mark["t"] = time.perf_counter()
    ms = median_ms(step, 1, args.repeats, after_warmup=start) / STEPS_PER_CALL
    out = {"ms": ms}
    if args.config == "pipeline":  # the share of the step each device's worker was idle
        wall = time.perf_counter() - mark["t"]
        out["idle"] = [1 - (d.stats()["busy_seconds"] - b) / wall for d, b in zip(devs, mark["busy"])]
    print(json.dumps(out))


def run(model, config, threads, args, m=0):
    env = dict(os.environ, LAMINA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.pop("LAMINA_CPU_THREADS_PER_DEVICE", None)
    batch, units = (args.mlp_batch, args.mlp_units) if model == "mlp" else (args.batch, args.units)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", config, "--m", str(m), "--model", model,
           "--batch", str(batch), "--units", str(units), "--repeats", str(args.repeats)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{config} worker failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def report(model, micro, args):
    configs = [("one, 1 core", "one", 1, 0), ("one, 2 cores", "one", 2, 0)] + \
        [(f"pipeline 2x1 core, M={m}", "pipeline", 1, m) for m in micro]
    times = {c[0]: [] for c in configs}
    for r in range(args.rounds):
        for label, config, threads, m in configs:
            times[label].append(run(model, config, threads, args, m))
        print(f"{model}: round {r + 1}/{args.rounds} done", file=sys.stderr)
    idle = {k: [statistics.mean(r["idle"]) for r in v] for k, v in times.items() if "idle" in v[0]}
    times = {k: [r["ms"] for r in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    t1 = med["one, 1 core"]
    if model == "mlp":
        print(f"MLP: {args.mlp_units} inputs, 8 x Dense({args.mlp_units}, relu) + Dense(10), 4 + 4 layers per stage, "
              f"batch {args.mlp_batch}", end="")
    else:
        print(f"deep LSTM LM: vocabulary {VOCAB}, {STEPS} steps, embedding {args.units}, 4 x LSTM({args.units}), "
              f"batch {args.batch}", end="")
    print(f"; ms per training step (median of {args.rounds} rounds x {args.repeats} fit calls of {STEPS_PER_CALL} "
          "steps)")
    print(f"{'configuration':<28} {'ms/step':>9} {'vs 1 core':>10} {'bubble':>8} {'GPipe bubble':>13} "
          f"{'lost vs ideal':>14}")
    for label, config, threads, m in configs:
        line = f"{label:<28} {med[label]:>9.1f} {t1 / med[label]:>9.2f}x"
        if config == "pipeline":
            line += (f" {statistics.median(idle[label]):>8.1%} {1 / (m + 1):>13.1%} "
                     f"{1 - t1 / (2 * med[label]):>14.1%}")
        print(line)
    best = min((med[c[0]], c[3]) for c in configs if c[1] == "pipeline")
    print(f"pipeline speedup {t1 / best[0]:.2f} ({model}, M={best[1]}; target >= 1.70); "
          f"one device with 2 cores {t1 / med['one, 2 cores']:.2f}\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    p.add_argument("--config", default="one")
    p.add_argument("--m", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--micro", default="2,4,8")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--no-mpi", action="store_true")
    p.add_argument("--model", default="lstm,mlp", help="lstm, mlp or both (lstm,mlp)")
    p.add_argument("--mlp-batch", type=int, default=512)
    p.add_argument("--mlp-units", type=int, default=1024)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    micro = [int(v) for v in args.micro.split(",")]
    for model in args.model.split(","):
        report(model, micro, args)
    if not args.no_mpi:
        mpi = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_parallel_mpi.py")
        if os.path.exists(mpi):
            try:
                import mpi4py  # noqa: F401
            except ImportError:
                print("\nmpi4py is not installed (pip install lamina[mpi]): MPI figures skipped")
                return
            print()
            sys.stdout.flush()
            subprocess.run([sys.executable, mpi], check=True)


if __name__ == "__main__":
    main()

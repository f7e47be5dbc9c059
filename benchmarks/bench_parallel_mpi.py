"""Multi-process data parallelism over MPI (lamina.distribute.MultiWorkerMirroredStrategy).

(a) All-reduce (sum) of 100 MB of float32 between 2 local processes: lamina's path (the
    tensor's own buffer handed to MPI through host_view, `Iallreduce(IN_PLACE)`, via
    `strategy.all_reduce_in_place`) under `mpiexec -n 2`, against `torch.distributed.all_reduce`
    with the gloo backend (2 processes, tcp://127.0.0.1). Prints
    `allreduce_100MB lamina_mpi_ms X torch_gloo_ms Y ratio Z` (ratio = gloo / lamina: > 1 means
    lamina's is faster).
(b) `fit` of an MLP (784-512-512-10, SGD, global batch 256) on 2 MPI ranks against 1 rank on the
    same global batch, per-step median; prints `mpi_dp speedup X.XX` (1-rank step / 2-rank step).

Every process uses one thread (LAMINA_NUM_THREADS=1, OMP_NUM_THREADS=1, torch.set_num_threads(1)).
Each measurement runs in its own processes, alternating lamina, torch, lamina, ...; the figure
is the median over rounds of each run's median after warm-up. Needs mpi4py + mpiexec
(`pip install ".[mpi]"`); torch is optional.

    PYTHONPATH=.dev python benchmarks/bench_parallel_mpi.py [--rounds 3] [--sections allreduce,dp]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

from _common import median_ms

MB = 100
N_FLOATS = MB * 1000 * 1000 // 4
DP = dict(batch=256, units=512, steps=30, warmup_epochs=1, epochs=4)


def _env():
    return dict(os.environ, LAMINA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                PYTHONUNBUFFERED="1")


def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = here if os.access(here, os.X_OK) else shutil.which("mpiexec")
    if exe is None:
        sys.exit("mpiexec not found: pip install mpi4py mpich (or lamina[mpi])")
    cmd = [exe]
    if "Open MPI" in subprocess.run(cmd + ["--version"], capture_output=True, text=True).stdout:
        cmd += ["--allow-run-as-root", "--oversubscribe"]
    return cmd


def _last_json(r, what):
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{r.stdout}\n{r.stderr}")
    return json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])


def _mpirun(n, worker, args):
    cmd = _mpiexec() + ["-n", str(n), sys.executable, os.path.abspath(__file__), "--worker", worker,
                        "--repeats", str(args.repeats)]
    return _last_json(subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600),
                      f"mpiexec -n {n} {worker}")


# ---- workers ---------------------------------------------------------------------------------------

def allreduce_lamina(args):
    import numpy as np
    import lamina
    from mpi4py import MPI
    strategy = lamina.distribute.MultiWorkerMirroredStrategy()
    t = lamina.convert_to_tensor(np.zeros(N_FLOATS, np.float32))
    comm = MPI.COMM_WORLD

    def once():
        comm.Barrier()
        strategy.all_reduce_in_place([t])
    ms = median_ms(once, 3, args.repeats)
    if comm.rank == 0:
        print(json.dumps({"ms": ms}))


def allreduce_gloo(args):
    """Rank `args.rank` of a 2-process gloo group."""
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank, world_size=2)
    t = torch.zeros(N_FLOATS, dtype=torch.float32)

    def once():
        dist.barrier()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    ms = median_ms(once, 3, args.repeats)
    if args.rank == 0:
        print(json.dumps({"ms": ms}))
    dist.destroy_process_group()


def run_gloo(args):
    try:
        import torch.distributed  # noqa: F401
    except ImportError:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "allreduce-gloo", "--repeats", str(args.repeats),
           "--port", str(port)]
    procs = [subprocess.Popen(cmd + ["--rank", str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env()) for r in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    r = subprocess.CompletedProcess(cmd, max(p.returncode for p in procs), outs[0][0], outs[0][1] + outs[1][1])
    return _last_json(r, "gloo all-reduce")


def dp_worker(args):
    """fit on the MLP; every rank reads its share of each global batch; per-step time from whole epochs."""
    import numpy as np
    import lamina
    from lamina import layers
    from mpi4py import MPI
    strategy = lamina.distribute.MultiWorkerMirroredStrategy()
    b, u, steps = DP["batch"], DP["units"], DP["steps"]
    rng = np.random.default_rng(0)
    x = rng.random((b * steps, 784), dtype=np.float32)
    y = rng.integers(0, 10, b * steps).astype(np.int64)
    with strategy.scope():
        model = lamina.Sequential([lamina.Input((784,)), layers.Dense(u, activation="relu"),
                                   layers.Dense(u, activation="relu"), layers.Dense(10)])
        model.compile(optimizer=lamina.optimizers.SGD(0.01),
                      loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))

    class EpochTimes(lamina.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append((time.perf_counter() - self.t0) / steps * 1e3)
    timer = EpochTimes()
    model.fit(x, y, batch_size=b, epochs=DP["warmup_epochs"] + DP["epochs"], shuffle=False, verbose=0,
              callbacks=[timer])
    if MPI.COMM_WORLD.rank == 0:
        print(json.dumps({"ms": statistics.median(timer.times[DP["warmup_epochs"]:]),
                          "ranks": strategy.num_replicas_in_sync}))


WORKERS = {"allreduce-lamina": allreduce_lamina, "allreduce-gloo": allreduce_gloo, "dp": dp_worker}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10, help="timed all-reduces per run")
    ap.add_argument("--sections", default="allreduce,dp")
    ap.add_argument("--worker", choices=sorted(WORKERS))
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.worker:
        WORKERS[args.worker](args)
        return
    sections = args.sections.split(",")
    if "allreduce" in sections:
        mpi, gloo = [], []
        for r in range(args.rounds):
            mpi.append(_mpirun(2, "allreduce-lamina", args)["ms"])
            g = run_gloo(args)
            if g is not None:
                gloo.append(g["ms"])
            print(f"allreduce round {r + 1}/{args.rounds}: lamina {mpi[-1]:.1f} ms, gloo "
                  f"{gloo[-1] if gloo else float('nan'):.1f} ms", file=sys.stderr)
        lm = statistics.median(mpi)
        gm = statistics.median(gloo) if gloo else float("nan")
        if not gloo:
            print("PyTorch is not installed: no gloo figure")
        print(f"allreduce_{MB}MB lamina_mpi_ms {lm:.1f} torch_gloo_ms {gm:.1f} ratio {gm / lm:.2f}")
    if "dp" in sections:
        one, two = [], []
        for r in range(args.rounds):
            one.append(_mpirun(1, "dp", args)["ms"])
            two.append(_mpirun(2, "dp", args)["ms"])
            print(f"dp round {r + 1}/{args.rounds}: 1 rank {one[-1]:.2f} ms/step, 2 ranks {two[-1]:.2f} ms/step",
                  file=sys.stderr)
        t1, t2 = statistics.median(one), statistics.median(two)
        print(f"MLP 784-{DP['units']}-{DP['units']}-10, global batch {DP['batch']}, SGD, 1 thread per rank: "
              f"1 rank {t1:.2f} ms/step, 2 ranks {t2:.2f} ms/step")
        print(f"mpi_dp speedup {t1 / t2:.2f}")


if __name__ == "__main__":
    main()

"""Kernel benchmarks: lamina's kernels against a reference library, measured in one run.

    PYTHONPATH=.dev python3 benchmarks/bench_kernels.py [--threads 2] [--rounds 5] [--section gemm]

Each library runs in its own process (`bench_kernels.py --worker <section> <lib> <case>` prints
one JSON line), and the parent alternates them (lamina, reference, lamina, reference, ...):
thread pools of different runtimes (OpenBLAS, PyTorch's OpenMP, ours) fight for the cores when
they share a process. Every worker warms up, then times several samples (each >= 0.2 s); the
parent prints the median over the samples of all rounds, and the ratio lamina / reference.
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS and LAMINA_NUM_THREADS are all set to
--threads for every worker. The numpy worker runs without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
(some environments set them, forcing OpenBLAS onto older kernels: Haswell's on a Zen 5), so that
OpenBLAS picks its kernels for this CPU; the footer shows which, from threadpoolctl.
`--keep-openblas-env` keeps them.

On a shared machine, samples during which other processes used the CPU are set aside (see
_time); the `quiet` column is the fraction of samples that were kept. Below 100%, rerun.

Sections are case lists with a worker per library; add one by appending to SECTIONS (see the
GEMM section: cases, workers, header, report, footer).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


# ---- timing -----------------------------------------------------------------------------------
# Other processes share the cores (on a shared machine: compilers, tests). A sample during which
# they used the CPU is slower for reasons that are not ours: each sample records the CPU time the
# rest of the machine used (from /proc/stat, minus this process's own), and the parent reports
# the median of the quiet samples when there are enough of them.
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s():
    """CPU seconds used by everything on the machine so far, or None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


def _own_cpu_s():
    t = os.times()
    return t.user + t.system


def _time(fn, min_sample_s=0.2, samples=5, warmup_s=0.2):
    """Calls fn repeatedly: warms up for warmup_s, then returns `samples` (seconds per call,
    foreign CPU seconds) pairs, each over enough calls to last min_sample_s."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    while time.perf_counter() - t0 < warmup_s:
        fn()
    reps = max(1, int(min_sample_s / max(first, 1e-7)))
    out = []
    for _ in range(samples):
        busy, own = _machine_busy_s(), _own_cpu_s()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        dt = time.perf_counter() - t
        foreign = None if busy is None else max(0.0, (_machine_busy_s() - busy) - (_own_cpu_s() - own))
        out.append((dt / reps, foreign, dt))
    return out


def _rates(samples, work):
    """[(rate, quiet)] from _time's samples; quiet: others used under 2 clock ticks (the
    resolution of /proc/stat) + 5% of the cores."""
    ncpu = os.cpu_count() or 1
    return [(work / t, foreign is None or foreign <= 2.0 / _TICK + 0.05 * wall * ncpu)
            for t, foreign, wall in samples]


def median_rate(worker_results, key="gflops"):
    """Median over the quiet samples of all rounds (all samples if fewer than 5 are quiet), and
    the fraction of samples that were quiet."""
    allv = [tuple(v) for r in worker_results for v in r[key]]
    quiet = [v for v, q in allv if q]
    use = quiet if len(quiet) >= 5 else [v for v, _ in allv]
    return statistics.median(use), len(quiet) / max(1, len(allv))


# ---- GEMM section -----------------------------------------------------------------------------
# name, M, K, N, trans_a, trans_b: C[M, N] = op(A)[M, K] @ op(B)[K, N]
GEMM_CASES = [
    ("square 256", 256, 256, 256, False, False),
    ("square 512", 512, 512, 512, False, False),
    ("square 1024", 1024, 1024, 1024, False, False),
    ("square 2048", 2048, 2048, 2048, False, False),
    ("layer 128x3136x1024", 128, 3136, 1024, False, False),
    ("layer 64x784x1024", 64, 784, 1024, False, False),
    # backward of the two layers (Y = X W): dX = dY W^T (A B^T), dW = X^T dY (A^T B)
    ("dX 128x1024x3136 A.B^T", 128, 1024, 3136, False, True),
    ("dW 3136x128x1024 A^T.B", 3136, 128, 1024, True, False),
    ("dX 64x1024x784 A.B^T", 64, 1024, 784, False, True),
    ("dW 784x64x1024 A^T.B", 784, 64, 1024, True, False),
    # the LSTM of bench_rnn.py (batch 64, 35 steps, 128 -> 256): input projection, one step
    ("lstm x 2240x128x1024", 2240, 128, 1024, False, False),
    ("lstm h 64x256x1024", 64, 256, 1024, False, False),
]


def _gemm_operands(case, seed=0):
    _, m, k, n, ta, tb = case
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    return a, b


def _gemm_flop(case):
    _, m, k, n, _, _ = case
    return 2.0 * m * n * k


def gemm_worker_lamina(case):
    import lamina
    from lamina import ops
    from lamina.backend import _cpu, linalg

    _, m, k, n, ta, tb = case
    a_np, b_np = _gemm_operands(case)
    a, b = _cpu.from_numpy(a_np), _cpu.from_numpy(b_np)
    c = _cpu.from_numpy(np.zeros((m, n), np.float32))
    flop = _gemm_flop(case) / 1e9
    at, bt = lamina.convert_to_tensor(a_np), lamina.convert_to_tensor(b_np)
    raw = lambda: _cpu.gemm(ta, tb, m, n, k, 1.0, a, b, 0.0, c)  # noqa: E731
    if ta or tb:  # the path backward takes: transposes folded into the GEMM, no copies
        via_ops = lambda: linalg._mm(at, bt, ta=ta, tb=tb)  # noqa: E731
    else:
        via_ops = lambda: ops.matmul(at, bt)  # noqa: E731
    # the two entry points alternate, one sample each in turn (the first timed in a process ran
    # up to 10% slower at 1024^3 when each took all its samples in a row)
    _time(raw, samples=1)
    _time(via_ops, samples=1)
    kernel, matmul = [], []
    for _ in range(5):
        kernel += _rates(_time(raw, samples=1, warmup_s=0.05), flop)
        matmul += _rates(_time(via_ops, samples=1, warmup_s=0.05), flop)
    return {"gflops": kernel, "matmul_gflops": matmul,
            "kernel": _cpu.gemm_kernel(), "threads": _cpu.num_threads()}


def gemm_worker_numpy(case):
    a, b = _gemm_operands(case)
    _, _, _, _, ta, tb = case
    a_op, b_op = (a.T if ta else a), (b.T if tb else b)  # views: BLAS gets the transpose flags
    c = np.empty((a_op.shape[0], b_op.shape[1]), np.float32)
    arch = "unknown (threadpoolctl not installed)"
    try:
        import threadpoolctl
        arch = ", ".join(f"{i.get('internal_api')} {i.get('architecture')}" for i in threadpoolctl.threadpool_info()
                         if i.get("user_api") == "blas") or "no BLAS found"
    except ImportError:
        pass
    return {"gflops": _rates(_time(lambda: np.matmul(a_op, b_op, out=c)), _gemm_flop(case) / 1e9), "arch": arch}


def gemm_report(name, results):
    """results[lib] = list of worker outputs over the rounds."""
    (ours, q1), (ref, q2) = median_rate(results["lamina"]), median_rate(results["numpy"])
    mm, q3 = median_rate(results["lamina"], "matmul_gflops")
    return f"{name:<26} {ours:9.1f} {mm:9.1f} {ref:9.1f} {ours / ref:7.2f}x {min(q1, q2, q3):6.0%}"


GEMM_HEADER = (f"{'GEMM float32 (GFLOP/s)':<26} {'lamina':>9} {'matmul':>9} {'numpy':>9} {'ratio':>8} {'quiet':>6}\n"
               f"{'':<26} {'_cpu.gemm':>9} {'ops':>9} {'OpenBLAS':>9} {'':>8} {'':>6}")

SECTIONS = {
    "gemm": {
        "cases": {c[0]: c for c in GEMM_CASES},
        "workers": {"lamina": gemm_worker_lamina, "numpy": gemm_worker_numpy},
        "header": GEMM_HEADER,
        "report": gemm_report,
        "footer": lambda r: (f"# lamina GEMM kernel: {r['lamina'][0]['kernel']}, {r['lamina'][0]['threads']} threads; "
                             f"numpy's BLAS: {r['numpy'][0].get('arch')}"),
    },
}


# ---- driver -----------------------------------------------------------------------------------
def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def run_worker(section, lib, case_name, threads, extra_env=None, keep_openblas_env=False):
    env = dict(os.environ, **(extra_env or {}))
    if lib == "numpy" and not keep_openblas_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LAMINA_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", section, lib, case_name],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {lib} {case_name!r} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per case (default 3)")
    p.add_argument("--section", action="append", choices=sorted(SECTIONS), help="section(s) to run (default all)")
    p.add_argument("--case", action="append", help="run only cases whose name contains this text")
    p.add_argument("--gemm-kernel", choices=["avx512", "avx2", "generic"],
                   help="force lamina's GEMM micro-kernel (sets LAMINA_GEMM_KERNEL for the workers)")
    p.add_argument("--worker", nargs=3, metavar=("SECTION", "LIB", "CASE"), help=argparse.SUPPRESS)
    p.add_argument("--no-conv", action="store_true", help="skip the conv2d section (bench_conv.py)")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for the numpy worker (default: unset)")
    args = p.parse_args()

    if args.worker:
        section, lib, case_name = args.worker
        sec = SECTIONS[section]
        print(json.dumps(sec["workers"][lib](sec["cases"][case_name])))
        return

    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {_cpu_name()}  {os.cpu_count()} CPUs  "
          f"threads={args.threads}  rounds={args.rounds}  numpy {np.__version__}")
    extra_env = {"LAMINA_GEMM_KERNEL": args.gemm_kernel} if args.gemm_kernel else {}
    for section in args.section or list(SECTIONS):
        sec = SECTIONS[section]
        libs = list(sec["workers"])
        print(sec["header"])
        last = None
        for name in sec["cases"]:
            if args.case and not any(s in name for s in args.case):
                continue
            results = {lib: [] for lib in libs}
            for _ in range(args.rounds):
                for lib in libs:  # alternate: lamina, reference, lamina, reference, ...
                    results[lib].append(run_worker(section, lib, name, args.threads, extra_env,
                                                   args.keep_openblas_env))
            print(sec["report"](name, results), flush=True)
            last = results
        if "footer" in sec and last:
            print(sec["footer"](last))
    if not args.no_conv and not args.section:
        # conv2d forward+backward for the MNIST convnet's two convolutions, lamina vs PyTorch
        # (bench_conv.py alternates the two libraries in separate processes the same way).
        print("\n## conv2d (MNIST convnet, batch 128): lamina vs PyTorch", flush=True)
        conv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_conv.py")
        subprocess.run([sys.executable, conv, "--rounds", str(args.rounds), "--threads", str(args.threads)],
                       check=False)


if __name__ == "__main__":
    main()

"""Training when the machine is shared: lamina's 2-thread training throughput on an idle machine
and with one other busy process (a Python busy loop) on the same cores, under OpenMP wait
policies. OpenMP threads that spin while they wait for each other keep their core when another
process wants it, and a team that waits on a descheduled thread stalls. Policies: "libgomp"
(its default: spin up to 300,000 times, then sleep), "lamina" (lamina's default, set in
backend/__init__.py unless the user set a policy: GOMP_SPINCOUNT=2000) and
"passive" (OMP_WAIT_POLICY=passive: sleep at once).

Models (bench_training.py's): convnet (Deep MNIST, batch 128) and mlp (784-1024-10, batch 128).
Each configuration runs in its own process, alternating, `fit` steps per second as a median
over `--repeats` timed groups of 10 steps after warm-up.

    PYTHONPATH=.dev python3 benchmarks/bench_contention.py [--rounds 3] [--repeats 5]
                                                           [--policies libgomp,lamina,passive]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench_training import _data, lamina_model

POLICIES = {
    "libgomp": {"GOMP_SPINCOUNT": "300000"},         # libgomp's own default: spin 300,000 times, then sleep
    "lamina": {},                                   # lamina's default (backend/__init__.py): 2,000
    "passive": {"OMP_WAIT_POLICY": "passive"},      # sleep at once
}


def worker(args):
    import lamina
    model = lamina_model(args.model, lamina)
    model.compile(optimizer="adam", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(args.model, 128 * 10)
    model.fit(x[:256], y[:256], batch_size=128, verbose=0)
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=128, verbose=0, shuffle=False)
        rates.append(10 / (time.perf_counter() - t0))
    print(json.dumps({"steps_per_s": statistics.median(rates)}))


def run(model, policy, busy, args):
    env = dict(os.environ, LAMINA_NUM_THREADS="2", OMP_NUM_THREADS="2")
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(k, None)
    env.update(POLICIES[policy])
    hog = None
    if busy:  # one other busy process: a Python loop, pinned to the second core when possible
        hog = subprocess.Popen([sys.executable, "-c", "import os\ntry: os.sched_setaffinity(0, {1})\n"
                                "except Exception: pass\nwhile True: pass"])
        time.sleep(0.3)
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "--model", model,
                            "--repeats", str(args.repeats)], env=env, capture_output=True, text=True)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])["steps_per_s"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    p.add_argument("--model", default="convnet")
    p.add_argument("--models", default="convnet,mlp")
    p.add_argument("--policies", default="libgomp,lamina,passive")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    policies = args.policies.split(",")
    for model in args.models.split(","):
        res = {(pol, busy): [] for pol in policies for busy in (False, True)}
        for r in range(args.rounds):
            for pol in policies:
                for busy in (False, True):
                    res[(pol, busy)].append(run(model, pol, busy, args))
            print(f"{model}: round {r + 1}/{args.rounds} done", file=sys.stderr)
        print(f"{model}, batch 128, 2 threads: training steps/s (median of {args.rounds} rounds)")
        print(f"{'wait policy':<12} {'idle':>8} {'1 busy process':>15} {'kept':>7}")
        for pol in policies:
            idle = statistics.median(res[(pol, False)])
            busy = statistics.median(res[(pol, True)])
            print(f"{pol:<12} {idle:>8.1f} {busy:>15.1f} {busy / idle:>7.0%}")
        print()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()

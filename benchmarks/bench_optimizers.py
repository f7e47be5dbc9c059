"""Optimizer update speed: one fused lamina update (optimizers/*.py, csrc/cpu/optim.cpp) vs the
same optimizer in PyTorch's torch.optim, where PyTorch has it.

    dense      one update of a (1024, 1024) weight and a (1024,) bias with dense gradients
    sparse     one update of an Embedding table (100000, 64) with a row gradient of 5120 ids
               (batch 256 x 20, duplicates summed): lamina's row kernel (`IndexedSlices`), and the
               same update with the gradient densified first ("dense-grad"); every optimizer here
               but SGD/Adagrad changes every row (its moments decay), so the row kernel walks the
               table too, reading zero rows where there is no gradient

torch.optim runs its single-tensor (for-loop) CPU implementation: Adadelta, Adamax, NAdam,
Adafactor (torch >= 2.5); it has no Ftrl, Lion or Lamb. The update rules differ in details
(Keras's Nadam momentum schedule and Adafactor's factored statistics are Keras 3's), so the ratio
compares the cost of one comparable step, not identical maths.

Each library runs in its own process, alternating lamina, torch, lamina, torch ...; each process
warms up, then times `--repeats` updates and reports the median; the table shows the median over
rounds and torch / lamina (>= 1.0 means lamina is at least as fast).

    PYTHONPATH=.dev python3 benchmarks/bench_optimizers.py [--rounds 2] [--repeats 20] [--threads 2]
"""
import argparse
import json

from _common import alternate, median_field, median_ms, run_worker

NAMES = ["Adadelta", "Adamax", "Nadam", "Ftrl", "Lion", "Lamb", "Adafactor"]
TORCH = {"Adadelta": "Adadelta", "Adamax": "Adamax", "Nadam": "NAdam", "Adafactor": "Adafactor"}
DENSE = [(1024, 1024), (1024,)]
TABLE, IDS = (100000, 64), (256, 20)


def lamina_worker(args):
    import numpy as np
    import lamina
    from lamina import optimizers
    from lamina.backend.sparse import IndexedSlices
    rng = np.random.default_rng(0)
    out = {}
    for name in NAMES:
        ws = [lamina.Variable(rng.standard_normal(s).astype(np.float32) * 0.1) for s in DENSE]
        gs = [lamina.convert_to_tensor(rng.standard_normal(s).astype(np.float32)) for s in DENSE]
        opt = getattr(optimizers, name)(learning_rate=0.01)
        out[f"dense|{name}"] = dict(ms=median_ms(lambda: opt.apply(gs, ws), args.warmup, args.repeats))
        table = lamina.Variable(rng.standard_normal(TABLE).astype(np.float32) * 0.1)
        ids = rng.integers(0, TABLE[0], IDS[0] * IDS[1])
        rows = rng.standard_normal((ids.size, TABLE[1])).astype(np.float32)
        g = IndexedSlices(rows, ids, TABLE)
        dense_g = lamina.convert_to_tensor(g)
        opt = getattr(optimizers, name)(learning_rate=0.01)
        out[f"sparse|{name}"] = dict(ms=median_ms(lambda: opt.apply([g], [table]), args.warmup, args.repeats))
        opt = getattr(optimizers, name)(learning_rate=0.01)
        out[f"dense-grad|{name}"] = dict(ms=median_ms(lambda: opt.apply([dense_g], [table]), args.warmup,
                                                      args.repeats))
    return out


def torch_worker(args):
    import torch
    torch.manual_seed(0)
    out = {}
    for name, tname in TORCH.items():
        if not hasattr(torch.optim, tname):
            continue
        ws = [(torch.randn(s) * 0.1).requires_grad_() for s in DENSE]
        for w in ws:
            w.grad = torch.randn(w.shape)
        opt = getattr(torch.optim, tname)(ws, lr=0.01)
        out[f"dense|{name}"] = dict(ms=median_ms(opt.step, args.warmup, args.repeats))
        table = (torch.randn(TABLE) * 0.1).requires_grad_()
        table.grad = torch.zeros(TABLE)
        ids = torch.randint(0, TABLE[0], (IDS[0] * IDS[1],))
        table.grad.index_add_(0, ids, torch.randn(ids.numel(), TABLE[1]))
        opt = getattr(torch.optim, tname)([table], lr=0.01)
        out[f"dense-grad|{name}"] = dict(ms=median_ms(opt.step, args.warmup, args.repeats))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=["lamina", "torch"])
    args = ap.parse_args()
    if args.worker:
        if args.worker == "torch":
            import torch
            torch.set_num_threads(args.threads)
        print(json.dumps(lamina_worker(args) if args.worker == "lamina" else torch_worker(args)))
        return
    runs = alternate(args.rounds, lambda lib: run_worker(__file__, lib, args.threads,
                                                         ["--repeats", args.repeats, "--warmup", args.warmup]))

    def med(lib, key):
        return median_field(runs, lib, key)

    print(f"{args.threads} threads, median of {args.rounds} rounds x {args.repeats} updates (ms)\n")
    hdr = (f"{'optimizer':10} {'dense lamina':>13} {'dense torch':>12} {'torch/lamina':>13} {'table sparse':>13} "
           f"{'table dense-grad':>17} {'torch dense-grad':>17} {'torch/lamina sparse':>20}")
    print(f"dense: weights {DENSE}; table: {TABLE} with {IDS[0] * IDS[1]} ids")
    print(hdr)
    print("-" * len(hdr))
    for name in NAMES:
        d, td = med("lamina", f"dense|{name}"), med("torch", f"dense|{name}")
        s, sd, ts = med("lamina", f"sparse|{name}"), med("lamina", f"dense-grad|{name}"), \
            med("torch", f"dense-grad|{name}")
        print(f"{name:10} {d:13.2f} {td:12.2f} {td / d:12.2f}x {s:13.2f} {sd:17.2f} {ts:17.2f} {ts / s:19.2f}x")


if __name__ == "__main__":
    main()

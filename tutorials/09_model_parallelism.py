"""Tutorial 9: model parallelism and data parallelism over devices.

The workshop's deep LSTM: a language model whose LSTM layer d runs on device d, written by
wrapping the single-device code in `with lamina.device(...)`. Without GPUs, lamina's virtual CPU
devices stand in (cpu:0, cpu:1, ...): each has its own worker thread and its own share of the
cores, so they really run at the same time. The script trains the same model three ways and
checks that they learn the same thing:

  1. unsplit     every layer on one device
  2. split       LSTM layer d on device d (model parallelism; the devices take turns)
  3. pipelined   split, and each batch streamed through the devices in micro-batches
                 (GPipe: `fit(..., micro_batches=M)`), so the devices work at the same time

then the same model data-parallel over two devices (`lamina.distribute.MirroredStrategy`), and
prints how to run it over processes or machines with MPI:

    mpiexec -n 2 python tutorials/09_model_parallelism.py --mpi [--quick]

    LAMINA_DATA_DIR=../shared/data python tutorials/09_model_parallelism.py
    python tutorials/09_model_parallelism.py --quick          # tiny generated text
"""
# %%
import argparse
import time

import numpy as np

import lamina
from lamina import layers


# %% [markdown]
# ## Devices
# `lamina.list_devices()` names the physical devices; `cpu:N` for any N is a virtual CPU
# device. On a machine with fewer cores than devices, give each device one core
# (`lamina.config.set_cpu_threads_per_device(1)`) so they do not fight over the same ones.

def pick_devices(n_layers):
    gpus = lamina.list_devices("gpu")
    if len(gpus) >= n_layers:
        return gpus[:n_layers]
    return [f"cpu:{d}" for d in range(n_layers)]


# %% [markdown]
# ## Data
# Penn Treebank word ids (tutorial 6), cut into windows of `num_steps` words; the target is the
# next word. Quick mode uses a tiny generated language.

def load(quick, num_steps, limit):
    if quick:
        rng = np.random.default_rng(0)
        patterns = [[3, 4, 5, 6], [7, 8, 5, 9, 10], [11, 4, 12], [13, 14, 15, 16, 17]]
        ids = np.concatenate([patterns[k] + [0] for k in rng.integers(0, len(patterns), 600)]).astype(np.int32)
        vocab = 20
    else:
        ids, _, _ = lamina.datasets.ptb.load_data()
        ids, vocab = ids[:limit], 10000
    n = (len(ids) - 1) // num_steps
    x = ids[:n * num_steps].reshape(n, num_steps)
    y = ids[1:n * num_steps + 1].reshape(n, num_steps)
    return x, y, vocab


# %% [markdown]
# ## The model, one layer per device
# The only difference between the unsplit and the split model is the device each block is
# created under. Weights are made on their layer's device, activations cross devices
# automatically (forward and backward), and `fit` works from outside any scope: the targets
# go to the output's device.

def build(vocab, hidden, devices, seed=0):
    lamina.utils.set_random_seed(seed)
    inp = lamina.Input((None,), dtype="int32")
    with lamina.device(devices[0]):
        h = layers.Embedding(vocab, hidden)(inp)
    for d, dev in enumerate(devices):
        with lamina.device(dev):
            h = layers.LSTM(hidden, return_sequences=True, name=f"lstm_{d}")(h)
    with lamina.device(devices[-1]):
        out = layers.Dense(vocab, name="softmax")(h)
    model = lamina.Model(inp, out)
    model.compile(optimizer=lamina.optimizers.Adam(0.002),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def train(model, x, y, args, **fit_kwargs):
    t0 = time.perf_counter()
    hist = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=False, verbose=0, **fit_kwargs)
    return hist.history["loss"], (time.perf_counter() - t0) / (args.epochs * -(-len(x) // args.batch_size))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny generated text, a few seconds")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--num-steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--micro-batches", type=int, default=4)
    ap.add_argument("--limit", type=int, default=100_000, help="PTB words used (full mode)")
    ap.add_argument("--mpi", action="store_true", help="data parallelism over MPI ranks (run under mpiexec)")
    args = ap.parse_args(argv)
    if args.quick:
        args.hidden, args.batch_size, args.epochs = 16, 16, 3
    x, y, vocab = load(args.quick, args.num_steps, args.limit)
    if args.mpi:
        return run_mpi(x, y, vocab, args)

    devices = pick_devices(args.layers)
    if devices[0].startswith("cpu"):
        lamina.config.set_cpu_threads_per_device(1)
    print(f"{len(x)} windows of {args.num_steps} words, vocabulary {vocab}; {args.layers} x LSTM({args.hidden}) "
          f"on {devices}")

    # %% 1-3: unsplit, split, pipelined -- the same start, so the same losses
    runs = {}
    reference = build(vocab, args.hidden, [devices[0]] * args.layers)
    start = reference.get_weights()
    runs["unsplit"] = train(reference, x, y, args)
    split = build(vocab, args.hidden, devices)
    split.set_weights(start)
    lamina.debugging.set_log_device_placement(True)   # one call, to show where each layer runs
    split(x[:2])
    lamina.debugging.set_log_device_placement(False)
    runs["split"] = train(split, x, y, args)
    piped = build(vocab, args.hidden, devices)
    piped.set_weights(start)
    runs[f"pipelined (M={args.micro_batches})"] = train(piped, x, y, args, micro_batches=args.micro_batches)
    print(f"\n{'':<22} {'loss':>8} {'ms/step':>9}")
    for name, (loss, sec) in runs.items():
        print(f"{name:<22} {loss[-1]:>8.4f} {sec * 1e3:>9.1f}")
    losses = [r[0][-1] for r in runs.values()]
    assert max(losses) - min(losses) < 1e-3 * max(1.0, abs(losses[0])), losses
    print("the three learn the same thing: losses agree")

    # %% 4: data parallelism -- the whole model on each of two devices, each batch split between them
    strategy = lamina.distribute.MirroredStrategy(devices[:2])
    with strategy.scope():
        mirrored = build(vocab, args.hidden, [devices[0]] * args.layers)
    mirrored.set_weights(start)
    loss, sec = train(mirrored, x, y, args)
    print(f"{'mirrored over ' + ','.join(devices[:2]):<22} {loss[-1]:>8.4f} {sec * 1e3:>9.1f}")
    assert abs(loss[-1] - losses[0]) < 1e-3 * max(1.0, abs(losses[0]))
    print("\nOver processes and machines (MPI), the same script:\n"
          "    mpiexec -n 2 python tutorials/09_model_parallelism.py --mpi")


def run_mpi(x, y, vocab, args):
    """Each rank trains a replica on its shard of every batch; gradients are all-reduced."""
    strategy = lamina.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build(vocab, args.hidden, ["cpu:0"] * args.layers)  # rank 0's weights are sent to every rank
    hist = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=False,
                     verbose=2 if strategy.is_chief else 0)
    if strategy.is_chief:
        print(f"{strategy.num_replicas_in_sync} ranks: loss {hist.history['loss'][-1]:.4f}")


if __name__ == "__main__":
    main()

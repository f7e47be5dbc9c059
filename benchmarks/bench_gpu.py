"""GPU speed (issue 15): lamina on a CUDA device against PyTorch CUDA, each in its own process.

Sections (`--sections`, comma-separated; default all):
  gemm       GEMM throughput, TFLOP/s, 4096^3 and 8192^3: lamina `ops.matmul` on tensors made
             inside `with lamina.device(DEV):` against `torch.matmul` on cuda.
               float32   TF32 off on both sides (lamina's is off by default; torch's
                         backends.cuda.matmul.allow_tf32 and backends.cudnn.allow_tf32 are set to
                         False in every torch worker unless --torch-tf32)
               bfloat16  bfloat16 operands, float32 accumulation: lamina's matmul on bfloat16
                         tensors (cuBLAS GemmStridedBatchedEx with float32 compute), torch.matmul
                         on bfloat16 tensors (a build of lamina without bfloat16 says so in its cell)
             Each sample runs --gemm-inner products and then waits for the device, so queued
             (asynchronous) kernels are timed to their end.
  convnet    Deep MNIST convnet training (bench_training.py's convnet: Conv5x5x32-pool-Conv5x5x64-
             pool-Dense1024-Dropout0.5-Dense10, Adam, sparse cross-entropy on logits), batch 128,
             samples/s: lamina's `train_on_batch` (the step `fit` runs) with model and batch on the
             device; torch's hand-written step (zero_grad, forward, loss, backward, Adam step,
             loss.item()) with model and batch on cuda. Second row: an epoch of 20 steps from host
             arrays, lamina's `fit` called outside the device scope against torch's loop copying
             each batch to cuda, both reading the loss once an epoch; ms per step.
  lstm       LSTM, batch 64, 35 steps, input 128, hidden 256 (bench_rnn.py's case), ms: forward
             (no gradients) and fwd+bwd (gradients of the inputs and of every weight): lamina
             `ops.lstm` on lamina.Variables on the device under a GradientTape, torch.nn.LSTM on
             cuda with torch.autograd.grad.
  inception  InceptionV3(weights=None) inference, 299x299, batch 64, images/s: lamina
             `applications.InceptionV3(weights=None).predict` built and run inside the device scope
             (host images in, host predictions out) against torchvision's
             `inception_v3(weights=None)` in eval mode under no_grad (host tensor copied to cuda,
             output copied back). Without torchvision, lamina only, with a note.
  pipeline   lamina only: the model-parallel deep LSTM language model (tutorials/
             09_model_parallelism.py, benchmarks/bench_parallel.py): embedding + LSTM 1-2 on the
             first device, LSTM 3-4 + softmax layer on the second, trained with `fit` (4 batches a
             call, ms per step), pipelined over two devices with fit(micro_batches=M) against every
             layer on one device. Devices: gpu:0,gpu:1 (cpu:0,cpu:1 when --device is a CPU;
             --pipeline-devices to choose). It prints the speedup, the GPipe bubble (K-1)/(M+K-1)
             for K = 2 stages and, where the devices report busy time, the measured idle share.

Every figure: each library (or pipeline configuration) runs in its own process, one process per
section, alternating lamina, torch, lamina, torch ... for --rounds rounds; each process warms up
(--warmup calls), then times --repeats calls and reports their median; the table shows the median
over rounds and lamina's speed relative to torch (>= 1.00x: lamina at least as fast). When a side
cannot run (lamina built without CUDA kernels or no GPU, torch without CUDA) its cells say
unavailable with the library's own message below the table, and the other side still runs.

    PYTHONPATH=.dev python benchmarks/bench_gpu.py                      # gpu:0 vs cuda:0, all sections
    PYTHONPATH=.dev python benchmarks/bench_gpu.py --sections gemm,lstm --rounds 3 --json gpu.json
    PYTHONPATH=.dev python benchmarks/bench_gpu.py --device cpu --smoke # tiny sizes on the CPU: a check
                                                                        # that the script runs, not a figure

--device gpu:N runs torch on cuda:N; --device cpu (or cpu:N) runs torch on the CPU. --smoke: tiny
sizes (GEMM 256^3, convnet batch 16, LSTM 4x5x8 -> 16, InceptionV3 at 75x75 batch 2, pipeline of
LSTM(16)), 1 round and 2 repeats unless --rounds / --repeats say otherwise.
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback

from _common import alternate, median_ms, run_worker

SECTIONS = ("gemm", "convnet", "lstm", "inception", "pipeline")

FULL = dict(gemm=(4096, 8192), convnet_batch=128, lstm=dict(batch=64, steps=35, features=128, units=256),
            inception=dict(batch=64, size=299),
            pipeline=dict(vocab=10000, steps=20, units=512, batch=256))
SMOKE = dict(gemm=(256,), convnet_batch=16, lstm=dict(batch=4, steps=5, features=8, units=16),
             inception=dict(batch=2, size=75),
             pipeline=dict(vocab=50, steps=5, units=16, batch=16))
PIPELINE_STEPS_PER_CALL = 4  # training steps per fit call (one epoch of 4 batches), as bench_parallel.py
FIT_STEPS = 20  # the convnet's `fit` row: steps per epoch (per timed call)
NO_BF16 = "n/a (no bfloat16 dtype yet)"


class Unavailable(Exception):
    """The library cannot use the requested device (its message says why)."""


def case(args):
    return SMOKE if args.smoke else FULL


def torch_device_name(device):
    """lamina's device name -> torch's: gpu:N (or cuda:N) -> cuda:N, cpu / cpu:N -> cpu."""
    kind, _, idx = device.strip().lower().partition(":")
    if kind in ("gpu", "cuda"):
        return f"cuda:{idx or 0}"
    if kind == "cpu":
        return "cpu"
    raise ValueError(f"--device: expected 'gpu:N' or 'cpu' (or 'cpu:N'), received {device!r}")


def pipeline_devices(args):
    if args.pipeline_devices:
        devs = [d.strip() for d in args.pipeline_devices.split(",")]
        if len(devs) != 2:
            raise SystemExit(f"--pipeline-devices: expected two device names, received {args.pipeline_devices!r}")
        return devs
    kind = args.device.strip().lower().partition(":")[0]
    return ["cpu:0", "cpu:1"] if kind == "cpu" else ["gpu:0", "gpu:1"]


# ---- worker setup ------------------------------------------------------------------------------

def lamina_setup(args, name=None):
    """(lamina, Device, sync): the device the section runs on, and a function that waits for it."""
    import lamina
    try:
        dev = lamina.get_device(name or args.device)
    except RuntimeError as e:  # no CUDA kernels in this build, or no such GPU: lamina's own message
        raise Unavailable(f"lamina: {e}") from None
    return lamina, dev, dev.synchronize


def lamina_meta():
    import importlib
    import lamina
    meta = {"version": lamina.__version__, "devices": lamina.list_devices()}
    dm = importlib.import_module("lamina.backend.device")
    if dm._CUDA is not None and dm._GPU_TABLE is not None:  # the libraries the GPU runs, and how often cuDNN ran
        meta["cublas"] = dm._CUDA.cublas_status()
        meta["cudnn"] = dm._CUDA.cudnn_status()
        meta["cudnn_calls_refused"] = list(dm._CUDA.cudnn_counts())
    return meta


def torch_setup(args):
    """(torch, device name, sync), with TF32 set for the float32 comparison."""
    import torch
    torch.set_num_threads(args.threads)
    name = torch_device_name(args.device)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise Unavailable(f"PyTorch {torch.__version__} cannot use {name}: torch.cuda.is_available() is False "
                              f"(built for CUDA {torch.version.cuda})")
        if int(name.split(":")[1]) >= torch.cuda.device_count():
            raise Unavailable(f"PyTorch cannot use {name}: {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(name)
        torch.backends.cuda.matmul.allow_tf32 = args.torch_tf32
        torch.backends.cudnn.allow_tf32 = args.torch_tf32
        return torch, name, torch.cuda.synchronize
    return torch, name, lambda: None


def torch_meta(args):
    import torch
    meta = {"version": torch.__version__, "cuda": torch.version.cuda}
    if torch_device_name(args.device).startswith("cuda") and torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name(torch_device_name(args.device))
        meta["allow_tf32"] = [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]
    return meta


def synced(fn, sync):
    """fn followed by a wait for the device, so that a sample ends when the device's work does."""
    def run():
        fn()
        sync()
    return run


# ---- gemm --------------------------------------------------------------------------------------

def _gemm_inputs(n):
    import numpy as np
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32))


def _lamina_bfloat16():
    """None when lamina computes in bfloat16, else why not (its dtype check, on the host)."""
    import lamina
    from lamina import ops
    try:
        ops.cast(lamina.convert_to_tensor([1.0], device="cpu"), "bfloat16")
    except TypeError as e:
        if "bfloat16" not in str(e):
            raise
        return NO_BF16
    return None


def gemm_lamina(args):
    no_bf16 = _lamina_bfloat16()  # known without the device: the cells say so even where it is unavailable
    bf16_rows = {f"bfloat16 {n}^3": dict(na=no_bf16) for n in case(args)["gemm"]} if no_bf16 else {}
    try:
        lamina, dev, sync = lamina_setup(args)
    except Unavailable as e:
        return {"unavailable": str(e), "rows": bf16_rows}
    from lamina import ops
    rows = {}
    for n in case(args)["gemm"]:
        a_np, b_np = _gemm_inputs(n)
        with lamina.device(dev):
            a, b = lamina.convert_to_tensor(a_np), lamina.convert_to_tensor(b_np)
        rows[f"float32 {n}^3"] = _time_products(ops.matmul, a, b, sync, args)
        if no_bf16:
            rows[f"bfloat16 {n}^3"] = bf16_rows[f"bfloat16 {n}^3"]
        else:
            rows[f"bfloat16 {n}^3"] = _time_products(ops.matmul, ops.cast(a, "bfloat16"), ops.cast(b, "bfloat16"),
                                                     sync, args)
    return {"rows": rows}


def _time_products(matmul, a, b, sync, args):
    """{ms, work}: the median time of --gemm-inner products a @ b followed by a wait for the device."""
    inner = args.gemm_inner

    def products():
        for _ in range(inner):
            matmul(a, b)
        sync()
    (m, k), n = a.shape, b.shape[1]
    return dict(ms=median_ms(products, args.warmup, args.repeats), work=2.0 * m * k * n * inner)


def gemm_torch(args):
    torch, dev, sync = torch_setup(args)
    rows = {}
    for n in case(args)["gemm"]:
        a_np, b_np = _gemm_inputs(n)
        a, b = torch.from_numpy(a_np).to(dev), torch.from_numpy(b_np).to(dev)
        for dtype, label in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
            rows[f"{label} {n}^3"] = _time_products(torch.matmul, a.to(dtype), b.to(dtype), sync, args)
    return {"rows": rows}


# ---- convnet -----------------------------------------------------------------------------------

def _mnist_batch(batch):
    import numpy as np
    rng = np.random.default_rng(0)
    return rng.random((batch, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, batch).astype(np.int64)


def convnet_lamina(args):
    import numpy as np
    lamina, dev, sync = lamina_setup(args)
    L = lamina.layers
    batch = case(args)["convnet_batch"]
    x_np, y_np = _mnist_batch(batch)
    with lamina.device(dev):
        model = lamina.Sequential([lamina.Input(shape=(28, 28, 1)),
                                   L.Conv2D(32, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
                                   L.Conv2D(64, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
                                   L.Flatten(), L.Dense(1024, activation="relu"), L.Dropout(0.5), L.Dense(10)])
        model.compile(optimizer=lamina.optimizers.Adam(1e-3),
                      loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = lamina.convert_to_tensor(x_np), lamina.convert_to_tensor(y_np)

        def step():
            model.train_on_batch(x, y)  # returns the loss as a Python float: the step has ended
        ms = median_ms(synced(step, sync), args.warmup, args.repeats)
    # the usual script: fit on host arrays, called outside the device scope (batches copied to the
    # device ahead of the step, the loss read once an epoch)
    xs, ys = np.concatenate([x_np] * FIT_STEPS), np.concatenate([y_np] * FIT_STEPS)
    fit_ms = median_ms(synced(lambda: model.fit(xs, ys, batch_size=batch, epochs=1, shuffle=False, verbose=0), sync),
                       1, max(2, args.repeats // 4)) / FIT_STEPS
    return {"rows": {f"train step, batch {batch}": dict(ms=ms, work=batch),
                     f"fit on host arrays, per step, batch {batch}": dict(ms=fit_ms, work=batch)},
            "how": _replay_how(model)}


def _replay_how(model):
    """How the model's train steps ran: replayed as one compiled Program, replayed from Python, or
    why not replayed (models/replay.py)."""
    entries = model._step_replay.entries.values() if model._step_replay is not None else ()
    hows = sorted({("compiled Program" if e.program.native is not None else "replayed from Python")
                   if e.program is not None else (e.failed or "recording") for e in entries})
    return "train step: " + ("; ".join(hows) if hows else "not replayed")


def convnet_torch(args):
    torch, dev, sync = torch_setup(args)
    nn = torch.nn
    batch = case(args)["convnet_batch"]
    x_np, y_np = _mnist_batch(batch)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    lossf = nn.CrossEntropyLoss()
    xt = torch.from_numpy(x_np.transpose(0, 3, 1, 2).copy()).to(dev)
    yt = torch.from_numpy(y_np).to(dev)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()
    ms = median_ms(synced(step, sync), args.warmup, args.repeats)
    # the usual loop over host batches: each copied to the device, the loss read once an epoch
    xs = [x_np.transpose(0, 3, 1, 2).copy() for _ in range(FIT_STEPS)]
    ys = [y_np.copy() for _ in range(FIT_STEPS)]

    def epoch():
        total = 0.0
        for xb, yb in zip(xs, ys):
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(torch.from_numpy(xb).to(dev)), torch.from_numpy(yb).to(dev))
            loss.backward()
            opt.step()
            total = total + loss.detach()
        return float(total)
    fit_ms = median_ms(synced(epoch, sync), 1, max(2, args.repeats // 4)) / FIT_STEPS
    return {"rows": {f"train step, batch {batch}": dict(ms=ms, work=batch),
                     f"fit on host arrays, per step, batch {batch}": dict(ms=fit_ms, work=batch)}}


# ---- lstm --------------------------------------------------------------------------------------

def lstm_lamina(args):
    import numpy as np
    lamina, dev, sync = lamina_setup(args)
    from lamina import ops
    c = case(args)["lstm"]
    B, T, F, U = c["batch"], c["steps"], c["features"], c["units"]
    rng = np.random.default_rng(0)
    s = 1.0 / np.sqrt(U)
    with lamina.device(dev):
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

        return {"rows": {"forward": dict(ms=median_ms(synced(fwd, sync), args.warmup, args.repeats)),
                         "fwd+bwd": dict(ms=median_ms(synced(step, sync), args.warmup, args.repeats))}}


def lstm_torch(args):
    torch, dev, sync = torch_setup(args)
    c = case(args)["lstm"]
    B, T, F, U = c["batch"], c["steps"], c["features"], c["units"]
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(F, U, batch_first=True).to(dev)
    x = torch.randn(B, T, F, device=dev)
    x_req = x.clone().requires_grad_()
    g = torch.randn(B, T, U, device=dev)
    params = list(lstm.parameters())

    def fwd():
        with torch.no_grad():
            lstm(x)

    def step():
        y, _ = lstm(x_req)
        torch.autograd.grad(y, [x_req] + params, g)

    return {"rows": {"forward": dict(ms=median_ms(synced(fwd, sync), args.warmup, args.repeats)),
                     "fwd+bwd": dict(ms=median_ms(synced(step, sync), args.warmup, args.repeats))}}


# ---- inception ---------------------------------------------------------------------------------

def _images(n, size):
    import numpy as np
    return np.random.default_rng(0).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def inception_lamina(args):
    lamina, dev, sync = lamina_setup(args)
    c = case(args)["inception"]
    x = _images(c["batch"], c["size"])
    with lamina.device(dev):
        model = lamina.applications.InceptionV3(weights=None, input_shape=(c["size"], c["size"], 3))

        def predict():
            model.predict(x, batch_size=c["batch"], verbose=0)  # numpy out: the batch has ended
        ms = median_ms(synced(predict, sync), args.warmup, args.repeats)
    return {"rows": {f"predict, batch {c['batch']}, {c['size']}x{c['size']}": dict(ms=ms, work=c["batch"])}}


def inception_torch(args):
    c = case(args)["inception"]
    if importlib.util.find_spec("torchvision") is None:
        return {"rows": {f"predict, batch {c['batch']}, {c['size']}x{c['size']}":
                         dict(na="n/a (torchvision is not installed)")}}
    torch, dev, sync = torch_setup(args)
    import torchvision
    torch.manual_seed(0)
    # init_weights=False: PyTorch's default initializers (the speed does not depend on the weights)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).to(dev).eval()
    x = torch.from_numpy(_images(c["batch"], c["size"]).transpose(0, 3, 1, 2).copy())

    def predict():
        with torch.no_grad():
            net(x.to(dev)).cpu()
    ms = median_ms(synced(predict, sync), args.warmup, args.repeats)
    return {"rows": {f"predict, batch {c['batch']}, {c['size']}x{c['size']}": dict(ms=ms, work=c["batch"])},
            "meta": dict(torch_meta(args), torchvision=torchvision.__version__)}


# ---- pipeline ----------------------------------------------------------------------------------

def pipeline_lamina(args):
    import numpy as np
    import lamina
    from lamina import layers
    c = case(args)["pipeline"]
    devs = pipeline_devices(args)
    split = args.config == "pipeline"
    first, second = (devs[0], devs[1]) if split else (devs[0], devs[0])
    devices = [lamina_setup(args, d)[1] for d in ([first, second] if split else [first])]
    if all(d.kind == "cpu" for d in devices):
        # every CPU device gets the same share of the cores in both configurations, as two GPUs
        # and one GPU would: two devices of k cores against one of k cores
        lamina.config.set_cpu_threads_per_device(max(1, args.threads // 2))
    lamina.utils.set_random_seed(0)
    inp = lamina.Input((c["steps"],), dtype="int32")
    with lamina.device(first):
        h = layers.Embedding(c["vocab"], c["units"])(inp)
        h = layers.LSTM(c["units"], return_sequences=True)(h)
        h = layers.LSTM(c["units"], return_sequences=True)(h)
    with lamina.device(second):
        h = layers.LSTM(c["units"], return_sequences=True)(h)
        h = layers.LSTM(c["units"], return_sequences=True)(h)
        out = layers.Dense(c["vocab"])(h)
    model = lamina.Model(inp, out)
    model.compile(optimizer=lamina.optimizers.SGD(0.1),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    n = c["batch"] * PIPELINE_STEPS_PER_CALL
    x = rng.integers(0, c["vocab"], size=(n, c["steps"])).astype(np.int32)
    y = rng.integers(0, c["vocab"], size=(n, c["steps"])).astype(np.int32)
    kwargs = {"micro_batches": args.m} if split else {}

    def step():
        model.fit(x, y, batch_size=c["batch"], epochs=1, shuffle=False, verbose=0, **kwargs)
        for d in devices:
            d.synchronize()
    mark = {}

    def start():
        mark["busy"] = [d.stats().get("busy_seconds") for d in devices]
        mark["t"] = time.perf_counter()
    ms = median_ms(step, args.warmup, args.repeats, after_warmup=start) / PIPELINE_STEPS_PER_CALL
    row = dict(ms=ms)
    if split and None not in mark["busy"]:  # the share of the timed calls each device's worker sat idle
        wall = time.perf_counter() - mark["t"]
        row["idle"] = [1 - (d.stats()["busy_seconds"] - b) / wall for d, b in zip(devices, mark["busy"])]
    return {"rows": {"step": row}}


# ---- worker ------------------------------------------------------------------------------------

WORKERS = {("gemm", "lamina"): gemm_lamina, ("gemm", "torch"): gemm_torch,
           ("convnet", "lamina"): convnet_lamina, ("convnet", "torch"): convnet_torch,
           ("lstm", "lamina"): lstm_lamina, ("lstm", "torch"): lstm_torch,
           ("inception", "lamina"): inception_lamina, ("inception", "torch"): inception_torch,
           ("pipeline", "lamina"): pipeline_lamina}


def worker(args):
    """Runs one section for one library and prints its JSON result as the last line: rows, or
    `unavailable` (the library's message), or `error` with the traceback."""
    try:
        out = WORKERS[(args.section, args.worker)](args)
    except Unavailable as e:
        out = {"unavailable": str(e)}
    except Exception as e:  # reported in the table's notes, never dropped
        traceback.print_exc()
        out = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    if "meta" not in out:
        try:
            out["meta"] = lamina_meta() if args.worker == "lamina" else torch_meta(args)
        except Exception as e:
            out["meta"] = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))


# ---- driver ------------------------------------------------------------------------------------

UNITS = {"gemm": ("TFLOP/s", 1e-12), "convnet": ("samples/s", 1.0), "lstm": ("ms", None),
         "inception": ("images/s", 1.0)}


def worker_args(args, section, **extra):
    out = ["--section", section, "--device", args.device, "--repeats", args.repeats, "--warmup", args.warmup,
           "--gemm-inner", args.gemm_inner]
    if args.smoke:
        out.append("--smoke")
    if args.torch_tf32:
        out.append("--torch-tf32")
    if args.pipeline_devices:
        out += ["--pipeline-devices", args.pipeline_devices]
    for k, v in extra.items():
        out += [f"--{k}", v]
    return out


def run_one(args, section, lib, **extra):
    """One worker process; a crash is reported as that run's error (the other side goes on)."""
    try:
        return run_worker(__file__, lib, args.threads, worker_args(args, section, **extra))
    except RuntimeError as e:
        return {"error": f"{lib} worker process failed", "traceback": str(e)}
    except (ValueError, IndexError) as e:  # no JSON line in its output
        return {"error": f"{lib} worker printed no result: {type(e).__name__}: {e}"}


class Notes:
    """Numbered notes under a section's table: each distinct message once."""

    def __init__(self):
        self.items = []

    def ref(self, text):
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"

    def print(self):
        for i, text in enumerate(self.items, 1):
            print(f"{i}. " + text.rstrip().replace("\n", "\n   "))


def _problems(runs_of_lib, notes, lib):
    """A cell's text for runs with no figure, with their messages as notes; '' when some run has one."""
    refs = []
    for run in runs_of_lib:
        if "unavailable" in run:
            refs.append("unavailable " + notes.ref(run["unavailable"]))
        elif "error" in run:
            tb = run.get("traceback", "")
            refs.append("error " + notes.ref(f"{lib}: {run['error']}" + (f"\n{tb}" if tb else "")))
    return " ".join(dict.fromkeys(refs))


def expected_rows(section, args):
    """The rows a section's table shows even when neither side could run (workers name the same)."""
    c = case(args)
    if section == "gemm":
        return [f"{dt} {n}^3" for n in c["gemm"] for dt in ("float32", "bfloat16")]
    if section == "convnet":
        return [f"train step, batch {c['convnet_batch']}", f"fit on host arrays, per step, batch {c['convnet_batch']}"]
    if section == "lstm":
        return ["forward", "fwd+bwd"]
    if section == "inception":
        return [f"predict, batch {c['inception']['batch']}, {c['inception']['size']}x{c['inception']['size']}"]
    return ["step"]


def summarize(section, runs, libs, expected=()):
    """{row: {lib: {ms, rate, runs_ms, idle} | {na}}} from each library's runs: the median ms over
    rounds, and the rate (work per second) from it; rows with no figure for a library lack it."""
    rows = dict.fromkeys(expected)
    for lib in libs:
        for run in runs.get(lib, []):
            for row in run.get("rows", {}):
                rows.setdefault(row, {})
    out = {}
    scale = UNITS.get(section, (None, None))[1]
    for row in rows:
        out[row] = {}
        for lib in libs:
            vals = [r["rows"][row] for r in runs.get(lib, []) if row in r.get("rows", {})]
            timed = [v for v in vals if "ms" in v]
            if timed:
                ms = statistics.median(v["ms"] for v in timed)
                cell = {"ms": ms, "runs_ms": [v["ms"] for v in timed]}
                if scale is not None and "work" in timed[0]:
                    cell["rate"] = timed[0]["work"] / (ms * 1e-3) * scale
                if "idle" in timed[0]:
                    cell["idle"] = statistics.median(statistics.mean(v["idle"]) for v in timed)
                out[row][lib] = cell
            elif vals:
                out[row][lib] = {"na": vals[0]["na"]}
    return out


def print_compare(section, title, runs, args, record):
    libs = ("lamina", "torch")
    unit = UNITS[section][0]
    notes = Notes()
    rows = summarize(section, runs, libs, expected_rows(section, args))
    problems = {lib: _problems(runs.get(lib, []), notes, lib) for lib in libs}
    print(f"\n### {section}: {title}\n")
    print(f"| case | lamina ({unit}) | torch ({unit}) | lamina speed / torch |")
    print("| --- | ---: | ---: | ---: |")
    for row, cells in rows.items():
        texts = {}
        for lib in libs:
            cell = cells.get(lib)
            if cell is None:
                texts[lib] = problems[lib] or ("no result" if not runs.get(lib) else "no figure")
            elif "na" in cell:
                texts[lib] = cell["na"]
            else:
                v = cell.get("rate", cell["ms"])
                texts[lib] = f"{v:.3g}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"
                if problems[lib]:  # some rounds failed: say so beside the figure
                    texts[lib] += f" ({problems[lib]})"
        lm, tm = (cells.get(lib, {}).get("ms") for lib in libs)
        ratio = f"{tm / lm:.2f}x" if lm and tm else "-"
        print(f"| {row} | {texts['lamina']} | {texts['torch']} | {ratio} |")
    if section == "inception" and not any("ms" in c.get("torch", {}) for c in rows.values()) \
            and any("na" in c.get("torch", {}) for c in rows.values()):
        notes.ref("torchvision is not importable here: InceptionV3 shows lamina only "
                  "(pip install torchvision for PyTorch's inception_v3).")
    print()
    notes.print()
    record["sections"][section] = {"title": title, "unit": unit, "rows": rows, "notes": notes.items}


def run_compare(section, title, args, record):
    runs = alternate(args.rounds, lambda lib: run_one(args, section, lib))
    for lib, rs in runs.items():
        for r in rs:
            if "meta" in r:
                record["libraries"].setdefault(lib, r["meta"])
    print_compare(section, title, runs, args, record)
    hows = sorted({r["how"] for r in runs.get("lamina", []) if "how" in r})
    if hows:  # how lamina ran it (a replayed step: compiled or not)
        print("lamina: " + " | ".join(hows) + "\n")
        record["sections"][section]["how"] = hows


def run_pipeline(args, record):
    c = case(args)["pipeline"]
    d0, d1 = pipeline_devices(args)
    micro = [int(m) for m in args.micro.split(",")]
    configs = [(f"one device ({d0})", "one", 0)] + [(f"pipeline {d0} + {d1}, M={m}", "pipeline", m) for m in micro]
    by_label = {label: (config, m) for label, config, m in configs}
    runs = alternate(args.rounds, lambda label: run_one(args, "pipeline", "lamina", config=by_label[label][0],
                                                        m=by_label[label][1]),
                     libs=tuple(label for label, _, _ in configs))
    summary = {label: summarize("pipeline", {label: runs[label]}, (label,)).get("step", {}).get(label)
               for label, _, _ in configs}
    notes = Notes()
    title = (f"deep LSTM LM, vocabulary {c['vocab']}, {c['steps']} steps, embedding {c['units']}, "
             f"4 x LSTM({c['units']}) + Dense({c['vocab']}), batch {c['batch']}, SGD; lamina only")
    print(f"\n### pipeline: {title}\n")
    print(f"ms per training step (`fit` over {PIPELINE_STEPS_PER_CALL} batches per call), median of {args.rounds} "
          f"rounds x {args.repeats} calls\n")
    print("| configuration | ms/step | speedup vs one device | measured idle | GPipe bubble |")
    print("| --- | ---: | ---: | ---: | ---: |")
    one = summary[configs[0][0]]
    for label, config, m in configs:
        cell = summary[label]
        if cell is None:
            print(f"| {label} | {_problems(runs[label], notes, 'lamina') or 'no figure'} | - | - | - |")
            continue
        speed = f"{one['ms'] / cell['ms']:.2f}x" if one else "-"
        idle = f"{cell['idle']:.1%}" if "idle" in cell else "-"
        gpipe = f"{1 / (m + 1):.1%}" if config == "pipeline" else "-"
        print(f"| {label} | {cell['ms']:.2f} | {speed} | {idle} | {gpipe} |")
    print()
    notes.print()
    record["sections"]["pipeline"] = {"title": title, "unit": "ms/step", "rows": summary, "notes": notes.items}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="gpu:0", help="lamina's device (gpu:N -> torch cuda:N; cpu -> torch cpu)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 1 round, 2 repeats: checks the script runs")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 2; 1 with --smoke)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per process (default 10; 2 with --smoke)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3; 1 with --smoke)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="host threads for both libraries (default: every core this process may use)")
    ap.add_argument("--gemm-inner", type=int, default=None,
                    help="products per GEMM sample before the wait for the device (default 10; 2 with --smoke)")
    ap.add_argument("--micro", default=None, help="pipeline micro-batch counts M (default 4,8; 2 with --smoke)")
    ap.add_argument("--pipeline-devices", default=None,
                    help="the pipeline's two devices (default gpu:0,gpu:1, or cpu:0,cpu:1 when --device is a CPU)")
    ap.add_argument("--torch-tf32", action="store_true", help="leave TF32 on in torch (off by default, as lamina's)")
    ap.add_argument("--json", metavar="OUT", help="also write every figure to this JSON file")
    ap.add_argument("--worker", choices=["lamina", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    ap.add_argument("--config", default="one", choices=["one", "pipeline"], help=argparse.SUPPRESS)
    ap.add_argument("--m", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    defaults = dict(rounds=(1, 2), repeats=(2, 10), warmup=(1, 3), gemm_inner=(2, 10), micro=("2", "4,8"))
    for key, (smoke, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, smoke if args.smoke else full)
    try:
        torch_device_name(args.device)  # a bad --device fails here, before any worker starts
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if args.worker:
        worker(args)
        return

    if "pipeline" in args.sections:
        pipeline_devices(args)  # a bad --pipeline-devices fails here too
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"--sections: unknown {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    record = {"config": {"device": args.device, "torch_device": torch_device_name(args.device), "smoke": args.smoke,
                         "rounds": args.rounds, "repeats": args.repeats, "warmup": args.warmup,
                         "threads": args.threads, "gemm_inner": args.gemm_inner, "torch_tf32": args.torch_tf32,
                         "date": time.strftime("%Y-%m-%d %H:%M:%S")},
              "libraries": {}, "sections": {}}
    print(f"# lamina on {args.device} vs PyTorch on {torch_device_name(args.device)}"
          f"{' (smoke sizes: a check that the script runs, not a figure)' if args.smoke else ''}\n")
    print(f"median of {args.rounds} round(s) x {args.repeats} repeat(s) after {args.warmup} warm-up call(s); "
          f"{args.threads} host thread(s); torch TF32 {'on' if args.torch_tf32 else 'off'}")
    sys.stdout.flush()
    c = case(args)
    lc = c["lstm"]
    titles = {"gemm": "GEMM, " + ", ".join(f"{n}^3" for n in c["gemm"])
                      + f" ({args.gemm_inner} products per sample)",
              "convnet": f"Deep MNIST convnet training, batch {c['convnet_batch']}, Adam",
              "lstm": "LSTM, batch {batch}, {steps} steps, input {features}, hidden {units}".format(**lc),
              "inception": f"InceptionV3(weights=None) inference, batch {c['inception']['batch']}, "
                           f"{c['inception']['size']}x{c['inception']['size']}"}
    for section in sections:
        print(f"{section} ...", file=sys.stderr)
        if section == "pipeline":
            run_pipeline(args, record)
        else:
            run_compare(section, titles[section], args, record)
        sys.stdout.flush()
    if record["libraries"]:
        print("\nlibraries: " + "; ".join(f"{lib} {json.dumps(meta)}" for lib, meta in record["libraries"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

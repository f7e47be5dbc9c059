"""Devices and device scopes.

A Device is a name bound to a kernel module with a fixed function table (KERNEL_TABLE below).
"cpu" (= "cpu:0") runs the C++ kernels on the calling thread; "cpu:1", "cpu:2", ... are virtual
CPU devices on the same kernels, each with its own worker thread, queue and team size, so work
placed on cpu:0 and cpu:1 runs at the same time; "gpu:N" runs the CUDA kernels when they are
built and a GPU is present. A kernel call on a queued device returns at once; reading a tensor
on the host waits only for the kernel that wrote it. `with lamina.device("cpu:1"):` scopes where
new tensors and weights are placed (thread-local, nestable).

How many cores each CPU device's kernels use: `set_cpu_threads_per_device(n)` (or the
LAMINA_CPU_THREADS_PER_DEVICE environment variable), e.g. 1 so that two devices on a 2-core
machine use one core each; by default every device uses LAMINA_NUM_THREADS (all cores).
LAMINA_LAUNCH_BLOCKING=1 runs every device's kernels on the calling thread (for debugging: a
kernel's error is then raised by the call that caused it).
"""
import contextlib
import os
import sys
import threading

from . import _cpu

# The functions every device module provides: the op kernels (each takes its buffers, shapes and
# scalars and writes its outputs in place), then the memory and device functions.
KERNEL_TABLE = (
    # elementwise.cpp
    "binary", "unary", "unary_grad", "where", "broadcast_to", "clip", "clip_grad", "axpby",
    # reduce.cpp
    "reduce", "argreduce", "cumulative", "cumprod_grad",
    # linalg.cpp
    "matmul", "gemm",
    # linalg_decomp.cpp
    "cholesky", "solve_triangular", "lu_factor", "solve", "inv", "det", "slogdet", "qr", "eigh", "svd",
    # fft.cpp
    "fft", "rfft", "irfft",
    # manipulation.cpp
    "strided_copy", "take", "take_grad", "take_along_axis", "take_along_axis_grad", "count_nonzero",
    "nonzero", "tri", "arange", "linspace",
    # nn.cpp
    "softmax", "softmax_grad", "xent_sparse", "xent_sparse_grad", "xent_dense", "xent_dense_grad", "bce",
    "bce_grad", "one_hot", "bias_relu", "bias_relu_grad",
    # norm.cpp
    "batch_norm_train", "batch_norm_train_grad", "batch_norm_infer", "batch_norm_infer_grad", "layer_norm",
    "layer_norm_grad",
    # embedding.cpp
    "embedding", "embedding_grad", "embedding_scatter_add", "sparse_sort", "sparse_segment_sum",
    # conv.cpp, depthwise.cpp
    "conv2d_forward", "conv2d_backward", "pool2d_forward", "pool2d_backward", "batch_transpose",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward",
    # random.cpp
    "random_uniform", "random_normal", "random_randint", "random_categorical", "random_shuffle", "random_gamma",
    "random_binomial", "dropout", "dropout_mask", "dropout_grad",
    # optim.cpp
    "sgd", "sgd_multi", "adam", "adam_multi", "rmsprop", "adagrad", "weight_decay", "sgd_sparse", "adam_sparse", "rmsprop_sparse",
    "adagrad_sparse", "sum_squares", "adadelta", "adadelta_sparse", "adamax", "adamax_sparse", "nadam", "nadam_sparse",
    "ftrl", "ftrl_sparse", "lion", "lion_sparse", "lamb", "lamb_sparse", "adafactor", "adafactor_sparse",
    # rnn.cpp
    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "simple_rnn_forward", "simple_rnn_backward",
    # sorting.cpp
    "sort_rows",
    # quantize.cpp, conv.cpp (int8 inference)
    "qgemm_pack", "qmatmul", "qconv2d_forward", "qdepthwise2d", "qembedding", "qgemm_packed_bytes",
    "qconv2d_fused", "qdepthwise2d_fused",
    # attention.cpp
    "attention_forward", "attention_backward",
    # memory.cpp
    "fill", "copy", "cast",
)
DEVICE_FUNCTIONS = (
    "Buffer", "from_numpy", "to_numpy", "host_view", "copy_between", "synchronize", "set_asynchronous", "device_stats",
    "set_device_threads", "device_threads", "memory_stats", "empty_cache",
)
# Op codes, written once in csrc/opcodes.h and exported by every module as {name: code}.
OP_CODE_TABLES = ("BINARY_OPS", "UNARY_OPS", "GRAD_OPS", "REDUCE_OPS", "SCAN_OPS")

_CUDA = None
_CUDA_IMPORT_ERROR = None
# LAMINA_CUDA_EMULATOR=1: the gpu devices run the CUDA kernels in the CUDA emulator on the CPU
# (lamina.backend._cuda_emu, csrc/cuda/emu), to test their logic without a GPU. Slow; for tests.
CUDA_EMULATED = os.environ.get("LAMINA_CUDA_EMULATOR", "") not in ("", "0")
try:  # the CUDA module is optional
    if CUDA_EMULATED:
        from . import _cuda_emu as _CUDA  # noqa: F401
    else:
        from . import _cuda as _CUDA  # noqa: F401
except ImportError as e:
    _CUDA, _CUDA_IMPORT_ERROR = None, e


def cuda_emulator_stats(reset=False):
    """The CUDA emulator's counters (LAMINA_CUDA_EMULATOR=1 only): kernel launches, blocks, CUDA
    threads, blocks run as fibers, host waits, copies to the host, cuBLAS calls, cuDNN
    convolutions and NCCL collectives since the last reset. Tests use them to check which path a
    kernel took and where the host waits."""
    if not CUDA_EMULATED or _CUDA is None:
        raise RuntimeError("cuda_emulator_stats: the gpu devices are not the CUDA emulator's "
                           "(set LAMINA_CUDA_EMULATOR=1 before importing lamina, with _cuda_emu built)")
    import ctypes
    fn = ctypes.CDLL(_CUDA.__file__).lamina_emu_stats
    fn.argtypes = (ctypes.POINTER(ctypes.c_longlong), ctypes.c_int)
    out = (ctypes.c_longlong * 9)()
    fn(out, int(bool(reset)))
    names = ("launches", "blocks", "threads", "fiber_blocks", "host_waits", "copies_to_host", "cublas_calls",
             "cudnn_calls", "nccl_calls")
    return dict(zip(names, (int(v) for v in out)))


def _load_library(load, wheel_dirs, stem):
    """A CUDA library through `load` (the module's load_cublas / load_cudnn / load_nccl): the
    emulator's own entry points under LAMINA_CUDA_EMULATOR=1 (the same dlopen path as the real
    library's), else the system's (its default names), else a copy a pip wheel installed
    (site-packages/nvidia/<wheel_dirs>/lib/<stem>.*, as PyTorch's CUDA wheels bring them). True
    when loaded."""
    if CUDA_EMULATED:
        return load(_CUDA.__file__)
    if load():
        return True
    import glob
    for entry in sys.path:
        found = [p for d in wheel_dirs for p in glob.glob(os.path.join(entry, "nvidia", d, "lib", stem + ".*"))]
        for path in sorted(found, reverse=True):
            if load(path):
                return True
    return False


def _load_cublas():
    """cuBLAS for the GPU's matmul (libcublas.so.13 / .12; the nvidia-cublas wheels: cu13/ for CUDA
    13, cublas/ for 12). Without it matmul runs lamina's own kernel. LAMINA_USE_CUBLAS=0 keeps
    lamina's own product kernels (comparisons, tests)."""
    if _CUDA is None:
        return
    if os.environ.get("LAMINA_USE_CUBLAS", "") == "0":
        _CUDA.set_use_cublas(False)
    _load_library(_CUDA.load_cublas, ("cu1[0-9]", "cublas"), "libcublas.so")


def _load_cudnn():
    """cuDNN for the GPU's convolutions (libcudnn.so.9 / .8; the nvidia-cudnn wheels). Without it
    convolutions run lamina's own kernels (im2col and a matrix product). LAMINA_USE_CUDNN=0 keeps
    lamina's kernels."""
    if _CUDA is None:
        return
    if os.environ.get("LAMINA_USE_CUDNN", "") == "0":
        _CUDA.set_use_cudnn(False)
    _load_library(_CUDA.load_cudnn, ("cudnn", "cu1[0-9]"), "libcudnn.so")


def load_nccl():
    """NCCL, for all-reduces between the GPUs of different processes (distribute/multi_worker.py):
    libnccl.so.2, or the nvidia-nccl wheel's. True when loaded; else _CUDA.nccl_status() says why."""
    return _CUDA is not None and _load_library(_CUDA.load_nccl, ("nccl", "cu1[0-9]"), "libnccl.so")


class KernelTable:
    """A device module's table: the functions of KERNEL_TABLE, DEVICE_FUNCTIONS and the op-code
    tables as attributes. A kernel the module does not define -- or a call it answers with
    KernelUnsupported (a dtype or op code without a kernel there yet) -- runs `host`'s kernel of
    the same name on host copies of its buffers, and every buffer is copied back (kernels write
    their outputs in place; a buffer passed twice is copied once, so in-place calls stay in place).
    The answers are the host kernel's: correct, and slow (two copies a buffer). `native` names
    the kernels the module itself runs; `fallbacks` counts the calls that ran on the host."""

    def __init__(self, module, host=_cpu, native=None):
        self.module, self.host = module, host
        self.fallbacks = {}
        self.BF16_KERNELS = tuple(getattr(module, "BF16_KERNELS", ()))  # the rest fall back to the host in float32
        names = set(KERNEL_TABLE)
        present = {n for n in names if hasattr(module, n)}
        self.native = frozenset(present if native is None else set(native) & present)
        for name in DEVICE_FUNCTIONS + OP_CODE_TABLES:
            setattr(self, name, getattr(module, name))
        unsupported = getattr(module, "KernelUnsupported", None)
        # A module with Programs (models/replay.py's compiled replays): its own kernels bind; a host
        # fallback (a table entry run on host copies) does not.
        self.Program = getattr(module, "Program", None) if module is not host else None
        for name in KERNEL_TABLE:
            fallback = self._host_kernel(name)
            if name in self.native:
                setattr(self, name, self._with_fallback(getattr(module, name), fallback, unsupported)
                        if unsupported is not None else getattr(module, name))
            else:
                setattr(self, name, fallback)

    def bindable(self, name):
        """Whether calls of `name` can be bound into this table's Programs (the module's own kernel, or
        a device function it binds: copy_between)."""
        return self.Program is not None and (name in self.native or name in DEVICE_FUNCTIONS) and \
            self.module.bindable(name)

    def bind_call(self, name, fn, args, kwargs):
        return self.module.bind_call(name, fn, args, kwargs)

    def fallback_count(self):
        return sum(self.fallbacks.values())

    @staticmethod
    def _with_fallback(kernel, fallback, unsupported):
        def call(*args, **kwargs):
            try:
                return kernel(*args, **kwargs)
            except unsupported:
                return fallback(*args, **kwargs)
        call.__name__ = getattr(kernel, "__name__", "kernel")
        return call

    def _host_kernel(self, name):
        module, host = self.module, self.host
        host_fn = getattr(host, name)
        dev_buffer = module.Buffer

        def to_host(a, copies):  # copies: id(device buffer) -> (device buffer, host copy)
            if isinstance(a, dev_buffer) and (module is not host or a.device != 0):
                pair = copies.get(id(a))
                if pair is None:
                    pair = copies[id(a)] = (a, host.from_numpy(module.to_numpy(a, [a.numel]), 0, a.dtype))
                return pair[1]
            if isinstance(a, (list, tuple)):
                return type(a)(to_host(e, copies) for e in a)
            return a

        def to_device(r, index):
            if isinstance(r, host.Buffer):
                return module.from_numpy(host.to_numpy(r, [r.numel]), index, r.dtype)
            if isinstance(r, (list, tuple)):
                return type(r)(to_device(e, index) for e in r)
            return r

        def call(*args, **kwargs):
            copies = {}
            hargs = [to_host(a, copies) for a in args]
            hkw = {k: to_host(v, copies) for k, v in kwargs.items()}
            result = host_fn(*hargs, **hkw)
            pairs = list(copies.values())
            for d, h in pairs:
                module.copy(module.from_numpy(host.to_numpy(h, [h.numel]), d.device, h.dtype), d)
            self.fallbacks[name] = self.fallbacks.get(name, 0) + 1
            return to_device(result, pairs[0][0].device if pairs else 0)

        call.__name__ = name
        return call


BF16_CODE = 5
# The kernels that take bfloat16 buffers themselves, when a module does not say (its BF16_KERNELS):
# fill, copy and cast. Every other kernel runs on float32 copies (WideningTable).
BF16_NATIVE = frozenset(("fill", "copy", "cast"))
# Argument positions a kernel only reads (csrc's signatures), for the kernels bfloat16 programs
# call most: their float32 copies are not rounded back afterwards (a buffer also passed in another
# position, as an in-place call's output, still is).
READ_ONLY = {
    "binary": (1, 3), "unary": (1,), "unary_grad": (1, 2), "reduce": (1,), "softmax": (0,), "softmax_grad": (0, 1),
    "where": (0, 2, 4), "clip": (0,), "clip_grad": (0, 3), "batch_transpose": (0,), "bias_relu": (0, 1),
    "bias_relu_grad": (0, 1), "conv2d_forward": (0, 2), "conv2d_backward": (0, 2, 4), "pool2d_forward": (1,),
    "pool2d_backward": (2,), "depthwise_conv2d_forward": (0, 2), "depthwise_conv2d_backward": (0, 2, 4),
    "embedding": (0,), "dropout": (0,), "layer_norm": (0, 1, 2), "layer_norm_grad": (0, 1, 2, 3, 4),
}


class WideningTable:
    """A kernel table that also takes bfloat16 buffers. Kernels without a bfloat16 version (those
    not in the module's BF16_KERNELS) run on float32 copies of the bfloat16 buffers they are given, made on their device
    by the `cast` kernel; afterwards every copy is rounded back into its buffer (kernels write their
    outputs in place; a buffer passed twice is widened once), and a float32 buffer the kernel
    returns comes back as bfloat16. So bfloat16 tensors compute in float32 and store in bfloat16,
    as XLA runs bfloat16 elementwise ops on CPUs. Float32 calls pass straight through.
    `widened` counts the calls that took the float32 copies, per kernel. While a step is recorded
    (models/replay.py) the table sits over the recorder's proxy of its module, so the recording
    holds the module's own calls (the casts and the float32 kernel), which a compiled Program
    can run.

    The devices switch to these tables on the first bfloat16 buffer (enable_bfloat16): programs
    that never use bfloat16 pay nothing for it."""

    def __init__(self, inner, buffer_type=None):
        self.inner = inner
        self.buffer_type = buffer_type or inner.Buffer  # the class (inner may be a step recorder's proxy)
        self.widened = {}
        self.native_bf16 = frozenset(getattr(inner, "BF16_KERNELS", BF16_NATIVE))
        for name in DEVICE_FUNCTIONS + OP_CODE_TABLES:
            setattr(self, name, getattr(inner, name))
        for name in KERNEL_TABLE:
            kernel = getattr(inner, name)
            setattr(self, name, kernel if name in self.native_bf16 else self._widening(name, kernel))

    def __getattr__(self, name):  # the module's other functions (fallbacks, program, load_cublas, ...)
        return getattr(self.inner, name)

    def _widening(self, name, kernel):
        inner = self.inner
        Buffer, new_buffer, cast = self.buffer_type, inner.Buffer, inner.cast
        seq = (list, tuple)

        def widen(a, copies):  # copies: id(bfloat16 buffer) -> (that buffer, its float32 copy)
            if type(a) is Buffer:
                if a.dtype != BF16_CODE:
                    return a
                pair = copies.get(id(a))
                if pair is None:
                    w = new_buffer(a.numel, 0, a.device)
                    cast(a, w)
                    pair = copies[id(a)] = (a, w)
                return pair[1]
            if isinstance(a, seq) and a and isinstance(a[0], (Buffer, list, tuple)):
                return type(a)(widen(e, copies) for e in a)
            return a

        def narrow(r):
            if type(r) is Buffer and r.dtype == 0:
                b = new_buffer(r.numel, BF16_CODE, r.device)
                cast(r, b)
                return b
            if isinstance(r, seq):
                return type(r)(narrow(e) for e in r)
            return r

        read_only = READ_ONLY.get(name, ())

        def call(*args, **kwargs):
            copies = {}
            wargs = [widen(a, copies) for a in args]
            wkw = {k: widen(v, copies) for k, v in kwargs.items()} if kwargs else kwargs
            if not copies:
                return kernel(*args, **kwargs)
            result = kernel(*wargs, **wkw)
            # buffers passed only where the kernel reads need no rounding back
            ro = {id(args[i]) for i in read_only if i < len(args) and type(args[i]) is Buffer}
            if ro:
                ro -= {id(a) for i, a in enumerate(args) if i not in read_only and type(a) is Buffer}
                ro -= {id(v) for v in kwargs.values() if type(v) is Buffer}
            for key, (b, w) in copies.items():
                if key not in ro:
                    cast(w, b)
            self.widened[name] = self.widened.get(name, 0) + 1
            return narrow(result) if result is not None else None

        call.__name__ = name
        return call


_WIDENING = {}  # id(kernel table) -> its WideningTable, so devices on one module share one table


class BF16_STATE:
    """`enabled` once the devices take bfloat16 (enable_bfloat16)."""
    enabled = False


def _widened(kernels):
    if kernels is None or isinstance(kernels, WideningTable):
        return kernels
    real = getattr(kernels, "_real", None)  # a step recorder's proxy (models/replay.py): its own table, not kept
    if real is not None:
        return WideningTable(kernels, buffer_type=real.Buffer)
    table = _WIDENING.get(id(kernels))
    if table is None:
        table = _WIDENING[id(kernels)] = WideningTable(kernels)
    return table


def enable_bfloat16():
    """Switches every device (and those made later) to kernel tables that take bfloat16 buffers
    (WideningTable). Called on the first bfloat16 buffer."""
    with _lock:
        BF16_STATE.enabled = True
        for dev in _devices.values():
            dev.kernels = _widened(dev.kernels)


def _disable_bfloat16():
    """Puts the devices back on their plain kernel tables (tests: after the bfloat16 ones, so the
    next tests run as a program that never used bfloat16). No bfloat16 tensor may be used after."""
    with _lock:
        BF16_STATE.enabled = False
        for dev in _devices.values():
            if isinstance(dev.kernels, WideningTable):
                dev.kernels = dev.kernels.inner


_GPU_TABLE = None


def _gpu_table():
    global _GPU_TABLE
    if _GPU_TABLE is None:
        _load_cublas()  # on first use of a GPU: `import lamina` stays cheap
        _load_cudnn()
        _GPU_TABLE = KernelTable(_CUDA)
    return _GPU_TABLE


class Device:
    """A device: `name` ("cpu:0", "gpu:1"), `kind`, `index` and its kernel module `kernels`."""

    __slots__ = ("kind", "index", "name", "kernels")

    def __init__(self, kind, index, kernels):
        self.kind, self.index = kind, index
        self.name = f"{kind}:{index}"
        self.kernels = kernels

    def enabled(self):
        """True when this device can run kernels."""
        return self.kernels is not None

    def buffer(self, numel, code):
        """A new uninitialised buffer of `numel` elements (dtype code) on this device."""
        if code == BF16_CODE and not BF16_STATE.enabled:
            enable_bfloat16()
        return self.kernels.Buffer(numel, code, self.index)

    def from_numpy(self, array, code=-1):
        """A new buffer on this device holding a copy of a C-contiguous numpy array (`code`: the
        dtype code it holds, where it cannot be told from the array: bfloat16 comes as uint16 bits)."""
        if code == BF16_CODE and not BF16_STATE.enabled:
            enable_bfloat16()
        return self.kernels.from_numpy(array, self.index, code)

    def synchronize(self):
        """Waits until every kernel queued on this device has run (raises a queued kernel's error)."""
        self.kernels.synchronize(self.index)

    @property
    def asynchronous(self):
        """True when the device runs kernels on its own worker thread (every device but cpu:0)."""
        return bool(self.kernels.device_stats(self.index)["asynchronous"])

    def set_asynchronous(self, value):
        """Runs kernels on the device's worker (True) or the calling thread (False); returns the
        previous setting. Switching to the calling thread first waits for the queue."""
        return self.kernels.set_asynchronous(self.index, bool(value))

    @property
    def threads(self):
        """How many threads this device's kernels use."""
        return self.kernels.device_threads(self.index)

    def set_threads(self, n):
        """Sets how many threads this device's kernels use (0: the default)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{self.name}.set_threads: expected a number of threads >= 1 (or 0 for the "
                             f"default), received {n!r}")
        self.kernels.set_device_threads(self.index, n)

    def stats(self):
        """{submitted, completed, queued, asynchronous, threads} for this device's queue."""
        return dict(self.kernels.device_stats(self.index))

    def __repr__(self):
        return f"Device('{self.name}')"

    def __str__(self):
        return self.name


_devices = {}
_lock = threading.Lock()
_MAX_CPU_DEVICES = 256  # csrc/cpu/device.cpp's kMaxDevices


def _gpu_count():
    if _CUDA is None:
        return 0
    try:
        return int(_CUDA.device_count())
    except Exception:
        return 0


def _unavailable_gpu_message(name):
    available = ", ".join(list_devices()) + " (and virtual CPU devices cpu:1, cpu:2, ...)"
    if _CUDA is None:
        why = "it was built without nvcc, or with LAMINA_CUDA=OFF"
        if _CUDA_IMPORT_ERROR is not None and "No module named" not in str(_CUDA_IMPORT_ERROR):
            why = f"its CUDA module did not load: {_CUDA_IMPORT_ERROR}"
        return (f"Device '{name}' is not available: this build of lamina has no CUDA kernels "
                f"({why}). Available devices: "
                f"{available}. Use one of those, or reinstall on a machine with the CUDA toolkit.")
    physical = _CUDA.physical_device_count()
    if physical == 0:
        return (f"Device '{name}' is not available: lamina has CUDA kernels but the CUDA driver reports no GPU "
                f"on this machine. Available devices: {available}.")
    return (f"Device '{name}' is not available: {physical} physical GPU(s) split into {_CUDA.virtual_gpus()} "
            f"virtual GPU(s) each make gpu:0 to gpu:{_gpu_count() - 1}. Available devices: {available}. "
            "For more GPU devices on one card, call lamina.set_virtual_gpus(n) before the first GPU tensor "
            "(or set LAMINA_VIRTUAL_GPUS).")


def get_device(name=None):
    """Returns the Device for a name ("cpu", "cpu:1", "gpu:0"), a Device, or the current scope's."""
    if name is None:
        return current_device()
    if isinstance(name, Device):
        return name
    if not isinstance(name, str):
        raise TypeError(f"Expected a device name such as 'cpu', 'cpu:1' or 'gpu:0', received {name!r}")
    key = name.strip().lower()
    dev = _devices.get(key)
    if dev is not None:
        return dev
    kind, _, idx = key.partition(":")
    if kind == "cuda":
        kind = "gpu"
    if kind not in ("cpu", "gpu") or (idx and not idx.isdigit()):
        raise ValueError(f"Unknown device {name!r}: expected 'cpu', 'cpu:N' or 'gpu:N' (N >= 0)")
    index = int(idx) if idx else 0
    if kind == "cpu" and index >= _MAX_CPU_DEVICES:
        raise ValueError(f"Unknown device {name!r}: virtual CPU devices are cpu:0 to cpu:{_MAX_CPU_DEVICES - 1}")
    if kind == "gpu" and index >= _gpu_count():
        raise RuntimeError(_unavailable_gpu_message(f"gpu:{index}"))
    with _lock:
        full = f"{kind}:{index}"
        dev = _devices.get(full)
        if dev is None:
            kernels = _cpu if kind == "cpu" else _gpu_table()
            dev = Device(kind, index, _widened(kernels) if BF16_STATE.enabled else kernels)
            _devices[full] = dev
        _devices[key] = dev
    return dev


class _ScopeState(threading.local):
    def __init__(self):
        self.stack = []


_scope = _ScopeState()
CPU = get_device("cpu")


def current_device():
    """The device that new tensors are placed on: the innermost `device` scope, else cpu:0."""
    stack = _scope.stack
    return stack[-1] if stack else CPU


class device:
    """Context manager placing new tensors and layer weights on a device.

        with lamina.device("cpu:1"):
            x = lamina.ops.ones((2, 2))   # x.device is cpu:1
    """

    def __init__(self, name):
        self.device = get_device(name)

    def __enter__(self):
        _scope.stack.append(self.device)
        return self.device

    def __exit__(self, *exc):
        _scope.stack.pop()
        return False

    def __repr__(self):
        return f"lamina.device('{self.device.name}')"


def set_virtual_gpus(n):
    """Splits each physical GPU into `n` virtual GPU devices (gpu:0 ... gpu:n-1 on the first card),
    each with its own stream and memory pool, so model-parallel, pipelined and data-parallel code
    runs on one card. Call it before the first GPU tensor is made (or set LAMINA_VIRTUAL_GPUS=n).
    A build or machine without GPUs raises, saying why."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_virtual_gpus: expected a number of virtual GPUs per physical GPU >= 1, received {n!r}")
    if _CUDA is None:
        raise RuntimeError(_unavailable_gpu_message("gpu:0"))
    _CUDA.set_virtual_gpus(n)


def enable_tensor_float_32_execution(enabled):
    """Lets float32 matrix products on GPUs round their inputs to TF32 on the tensor cores (about
    1e-3 relative error, several times faster). Off by default: float32 products are float32.
    CPU kernels never use TF32."""
    global _tf32
    _tf32 = bool(enabled)
    if _CUDA is not None:
        _CUDA.set_allow_tf32(_tf32)


def tensor_float_32_execution_enabled():
    """Whether GPU float32 matrix products may use TF32 (enable_tensor_float_32_execution)."""
    return _tf32


_tf32 = False


def list_devices(kind=None):
    """Names of the usable devices: 'cpu:0' and one 'gpu:N' per GPU device (virtual GPUs
    included); `kind` ('cpu' or 'gpu') keeps one kind. Virtual CPU devices cpu:1, cpu:2, ... are
    made on use and not listed."""
    names = ["cpu:0"] + [f"gpu:{i}" for i in range(_gpu_count())]
    return [n for n in names if kind is None or n.startswith(kind)]


def devices(kind=None):
    """The usable devices' names (list_devices)."""
    return list_devices(kind)


def set_cpu_threads_per_device(threads):
    """How many cores each CPU device's kernels use (0: LAMINA_NUM_THREADS, all cores). With two
    devices on a 2-core machine, 1 gives each its own core. A device's own `set_threads` wins."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"set_cpu_threads_per_device: expected a number of threads >= 1 (or 0 for the default), "
                         f"received {threads!r}")
    _cpu.set_cpu_threads_per_device(threads)


def get_cpu_threads_per_device():
    """The value set by set_cpu_threads_per_device (or LAMINA_CPU_THREADS_PER_DEVICE); 0 when unset."""
    return _cpu.cpu_threads_per_device()


def synchronize(devices=None):
    """Waits for the kernels queued on `devices` (names or Devices; default: every device used)."""
    for d in (_used_devices() if devices is None else [get_device(d) for d in devices]):
        d.synchronize()


def _used_devices():
    with _lock:
        return list({id(d): d for d in _devices.values()}.values())


@contextlib.contextmanager
def asynchronous(devices):
    """Within the block every device in `devices` runs its kernels on its own worker thread, so the
    calling thread only queues work (pipelines and replicas use it for cpu:0 too); afterwards
    each device returns to its previous mode, waiting for its queue where it goes back inline."""
    devs = [get_device(d) for d in devices]
    previous = [(d, d.set_asynchronous(True)) for d in devs]
    try:
        yield
    finally:
        for d, was in previous:
            d.set_asynchronous(was)


# ---- placement log ----------------------------------------------------------------------------
_log_placement = os.environ.get("LAMINA_LOG_DEVICE_PLACEMENT", "") not in ("", "0")


def set_log_device_placement(enabled):
    """Prints, to stderr, the device each layer call runs on (lamina.debugging)."""
    global _log_placement
    _log_placement = bool(enabled)


def get_log_device_placement():
    return _log_placement


def log_placement(layer, device):
    """Called by Layer.__call__ when the placement log is on."""
    if _log_placement:
        print(f"lamina: layer '{layer.name}' ({type(layer).__name__}) ran on {device.name}", file=sys.stderr)

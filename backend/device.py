"""Devices and device scopes.

A Device is a name bound to a kernel module with a fixed function table. "cpu" (= "cpu:0") runs
the C++ kernels; "cpu:1", "cpu:2", ... are virtual CPU devices on the same kernels, for testing
placement on one machine; "gpu:N" runs the CUDA kernels when they are built and a GPU is present.
`with lamina.device("cpu:1"):` scopes where new tensors and weights are placed (thread-local,
nestable).
"""
import threading

from . import _cpu

_CUDA = None
try:  # the CUDA module is optional
    from . import _cuda as _CUDA  # noqa: F401
except ImportError:
    _CUDA = None


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

    def __repr__(self):
        return f"Device('{self.name}')"

    def __str__(self):
        return self.name


_devices = {}
_lock = threading.Lock()


def _gpu_count():
    if _CUDA is None:
        return 0
    try:
        return int(_CUDA.device_count())
    except Exception:
        return 0


def _unavailable_gpu_message(name):
    if _CUDA is None:
        return (f"Device '{name}' is not available: this build of lamina has no CUDA kernels "
                "(it was built without nvcc, or with LAMINA_CUDA=OFF). Use 'cpu' or a virtual "
                "'cpu:N' device, or reinstall on a machine with the CUDA toolkit.")
    return (f"Device '{name}' is not available: {_gpu_count()} GPU(s) found. Use an index below "
            "that, or 'cpu'.")


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
    if kind == "gpu" and index >= _gpu_count():
        raise RuntimeError(_unavailable_gpu_message(f"gpu:{index}"))
    with _lock:
        full = f"{kind}:{index}"
        dev = _devices.get(full)
        if dev is None:
            dev = Device(kind, index, _cpu if kind == "cpu" else _CUDA)
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


def list_devices(kind=None):
    """Names of the physical devices: 'cpu:0' and one 'gpu:N' per visible GPU."""
    names = ["cpu:0"] + [f"gpu:{i}" for i in range(_gpu_count())]
    return [n for n in names if kind is None or n.startswith(kind)]

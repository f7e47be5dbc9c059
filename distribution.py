"""Keras's `keras.distribution` for data parallelism, on lamina's devices:

    devices = lamina.distribution.list_devices()            # ['gpu:0', 'gpu:1'], or ['cpu:0']
    lamina.distribution.set_distribution(lamina.distribution.DataParallel(devices=devices))
    model = make_model(); model.compile(...); model.fit(...)  # each batch split over the devices

A `DataParallel` distribution is a `MirroredStrategy` over its devices (lamina/distribute):
models created while it is set (globally with `set_distribution`, or inside its `scope()`) keep
it, and their `fit` splits every batch into one slice per device, computes each slice's
gradients on its device and adds them on the first before the optimizer step; the weights stay
replicated. Keras's model-parallel API (ModelParallel, LayoutMap, TensorLayout: variables sharded
over a mesh) has no lamina counterpart: lamina places whole layers on devices instead (`with
lamina.device("gpu:1"):`, pipelined with `fit(..., micro_batches=M)`)."""
import math

from .backend.device import get_device, list_devices as _list_devices
from .distribute.mirrored import MirroredStrategy
from .distribute.strategy import get_strategy, set_default_strategy

__all__ = ["list_devices", "get_device_count", "DeviceMesh", "DataParallel", "set_distribution", "distribution"]

def list_devices(device_type=None):
    """The usable devices, Keras's way ('cpu:0', 'gpu:0', ...): `device_type` 'cpu' or 'gpu'
    keeps one kind; by default the GPUs when there are any, else the CPU. (Virtual CPU devices
    'cpu:1', ... are not listed; name them in `devices=` to use them.)"""
    if device_type is not None:
        kind = str(device_type).lower()
        if kind not in ("cpu", "gpu"):
            raise ValueError(f"list_devices: device_type must be 'cpu', 'gpu' or None, received {device_type!r}")
        return _list_devices(kind)
    return _list_devices("gpu") or _list_devices("cpu")


def get_device_count(device_type=None):
    """How many devices `list_devices(device_type)` lists."""
    return len(list_devices(device_type))


class DeviceMesh:
    """Devices laid out on named axes (Keras's DeviceMesh): `shape` (one size per axis),
    `axis_names`, `devices` (device names, as many as the shape holds; list_devices() by
    default). DataParallel takes a one-axis mesh: its axis is the batch axis."""

    def __init__(self, shape, axis_names, devices=None):
        shape, axis_names = tuple(shape), list(axis_names)
        if len(shape) != len(axis_names):
            raise ValueError(f"DeviceMesh: shape {shape} and axis_names {axis_names} must have the same length")
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"DeviceMesh: shape must hold positive integers, received {shape}")
        devices = list(list_devices() if devices is None else devices)
        if math.prod(shape) != len(devices):
            raise ValueError(f"DeviceMesh: a mesh of shape {shape} holds {math.prod(shape)} devices, received "
                             f"{len(devices)}: {devices}")
        self.shape, self.axis_names, self.devices = shape, axis_names, [_name(d) for d in devices]

    def __repr__(self):
        return f"DeviceMesh(shape={self.shape}, axis_names={self.axis_names}, devices={self.devices})"


def _name(device):
    return get_device(device).name


class DataParallel:
    """Data parallelism over `devices` (or over the devices of a one-axis `device_mesh`; by
    default every device list_devices() gives): the weights replicated on each, every batch
    split between them (see the module docstring). `auto_shard_dataset` is Keras's switch for
    multi-process input sharding; a DataParallel runs in one process, where Keras does not
    shard either (lamina's multi-process training is MultiWorkerMirroredStrategy)."""

    def __init__(self, device_mesh=None, devices=None, auto_shard_dataset=True):
        if device_mesh is not None and devices is not None:
            raise ValueError("DataParallel: pass device_mesh or devices, not both")
        if device_mesh is not None:
            if not isinstance(device_mesh, DeviceMesh):
                raise ValueError(f"DataParallel: device_mesh must be a DeviceMesh, received {device_mesh!r}")
            if len(device_mesh.shape) != 1:
                raise ValueError(f"DataParallel needs a one-axis DeviceMesh (its batch axis), received shape "
                                 f"{device_mesh.shape}; lamina has no variable sharding across a mesh's other axes")
        else:
            names = list(list_devices() if devices is None else devices)
            if not names:
                raise ValueError("DataParallel: no devices")
            device_mesh = DeviceMesh((len(names),), ["batch"], names)
        self.device_mesh = device_mesh
        self.batch_dim_name = device_mesh.axis_names[0]
        self.auto_shard_dataset = bool(auto_shard_dataset)
        self.strategy = MirroredStrategy(device_mesh.devices)
        self.strategy._distribution = self

    def scope(self):
        """Models created in this block keep this distribution (as under set_distribution)."""
        return self.strategy.scope()

    def __repr__(self):
        return f"DataParallel(devices={self.device_mesh.devices})"


def set_distribution(value):
    """Makes `value` (a DataParallel, or None to stop) the distribution of the models created
    from now on."""
    if value is not None and not isinstance(value, DataParallel):
        raise ValueError(f"set_distribution: expected a DataParallel distribution or None, received {value!r}")
    set_default_strategy(None if value is None else value.strategy)


def distribution():
    """The distribution set with set_distribution, or that of the innermost DataParallel scope;
    None when there is none."""
    return getattr(get_strategy(), "_distribution", None)

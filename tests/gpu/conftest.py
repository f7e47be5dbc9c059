"""Devices under test for tests/gpu: the real GPU devices gpu:0 and gpu:1 (one card split into two
virtual GPUs, marked `gpu`: `pytest -m gpu` runs only those), and a host-fallback device pair
that runs here on every machine: two CPU devices whose kernel table has no kernel of its own, so
every call goes through backend/device.py's host fallback, the path GPU kernels without a CUDA
version take. The same tests check the GPU against the CPU and, here, the fallback machinery."""
import importlib

import pytest

import lamina

_dm = importlib.import_module("lamina.backend.device")

# Split the card before any GPU tensor exists (model-parallel and pipeline tests need two devices).
if _dm._CUDA is not None and _dm._CUDA.physical_device_count() > 0 and _dm._CUDA.device_count() < 2:
    lamina.set_virtual_gpus(2)

_FALLBACK = None


def _fallback_pair():
    global _FALLBACK
    if _FALLBACK is None:
        table = _dm.KernelTable(_dm._cpu, native=())
        _FALLBACK = (_dm.Device("cpu", 5, table), _dm.Device("cpu", 6, table))
        # in the device registry (not by a name get_device takes), as every device is: replayed steps
        # record the kernels of the registered devices, bfloat16 switches their tables
        for d in _FALLBACK:
            _dm._devices[f"host-fallback:{d.index}"] = d
    return _FALLBACK


def _gpu_pair():
    gpus = lamina.list_devices("gpu")
    if len(gpus) < 2:
        pytest.skip("no GPU: " + (_dm._unavailable_gpu_message("gpu:0") if not gpus else "only one GPU device"))
    return lamina.get_device("gpu:0"), lamina.get_device("gpu:1")


@pytest.fixture(params=[pytest.param("gpu", marks=pytest.mark.gpu), "host-fallback"])
def devices(request):
    """(device, second device) of one kind."""
    return _gpu_pair() if request.param == "gpu" else _fallback_pair()


@pytest.fixture
def dev(devices):
    return devices[0]

import os
import sys

import numpy as np
import pytest

# tests/opcheck.py and friends are plain modules next to this file
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _float32_after_bfloat16():
    """A test that used bfloat16 (or a mixed precision policy) leaves the next one a program that
    never did: the float32 policy and the devices' plain kernel tables."""
    yield
    import importlib
    device = importlib.import_module("lamina.backend.device")
    if device.BF16_STATE.enabled:
        import lamina
        lamina.mixed_precision.set_global_policy("float32")
        device._disable_bfloat16()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

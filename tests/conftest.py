import os
import sys

import numpy as np
import pytest

# tests/opcheck.py and friends are plain modules next to this file
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

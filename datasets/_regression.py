"""What the two house-price regression datasets (`boston_housing`, `california_housing`) share:
the .npz of arrays x and y, shuffled with `np.random.RandomState(seed)` and cut at
int(n * (1 - test_split)), as Keras does."""
import numpy as np

from ._files import fetch
from ._pickle import load_npz

BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


def check_split(where, test_split):
    if isinstance(test_split, bool) or not isinstance(test_split, (int, float)) or not 0 <= test_split < 1:
        raise ValueError(f"{where}: invalid `test_split` argument: {test_split!r}. It must be between 0 and 1 "
                         "(exclusive of 1).")


def load_xy(subdir, path, url_name, sha256):
    """(x, y) from the release file `subdir/path` (fetched from Keras's URL when absent)."""
    file = fetch(subdir, path, BASE_URL + url_name, sha256)
    arrays = load_npz(file)
    missing = {"x", "y"} - set(arrays)
    if missing:
        raise ValueError(f"{file}: expected arrays x and y; missing {sorted(missing)}")
    x, y = arrays["x"], arrays["y"]
    if len(x) != len(y):
        raise ValueError(f"{file}: x holds {len(x)} samples but y {len(y)} targets")
    return x, y


def shuffle_and_split(x, y, test_split, seed):
    indices = np.arange(len(x))
    np.random.RandomState(seed).shuffle(indices)
    x, y = x[indices], y[indices]
    cut = int(len(x) * (1 - test_split))
    return (np.array(x[:cut]), np.array(y[:cut])), (np.array(x[cut:]), np.array(y[cut:]))

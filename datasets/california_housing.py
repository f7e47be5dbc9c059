"""California housing prices (the 1990 census, one row per block group): 20,640 samples of 8
features (median income, house age, average rooms and bedrooms, population, average occupancy,
latitude, longitude), the target the median house value in dollars. `load_data` is Keras's."""
from . import _regression

NPZ_SHA256 = "1a2e3a52e0398de6463aebe6f4a8da34fb21fbb6b934cf88c3425e766f2a1a6f"


def load_data(version="large", path="california_housing.npz", test_split=0.2, seed=113):
    """Returns `(x_train, y_train), (x_test, y_test)`: (n, 8) features and (n,) targets.
    version "large" has all 20,640 samples, "small" the first 600 (before shuffling); then, as
    Keras, a shuffle with `np.random.RandomState(seed)` and the last `test_split` as the test set.
    The file `california_housing/<path>` comes from LAMINA_DATA_DIR or the cache, else from
    Keras's URL, checked against its sha256."""
    where = "california_housing.load_data"
    _regression.check_split(where, test_split)
    if version not in ("small", "large"):
        raise ValueError(f"{where}: argument `version` must be one of 'small', 'large'. Received: version={version!r}")
    x, y = _regression.load_xy("california_housing", path, "california_housing.npz", NPZ_SHA256)
    if version == "small":
        x, y = x[:600], y[:600]
    return _regression.shuffle_and_split(x, y, test_split, seed)

"""Boston housing prices (Harrison and Rubinfeld, 1978): 506 samples of 13 features, the target
the median home value in thousands of dollars. `load_data` is Keras's: the same file, shuffle and
split."""
from . import _regression

NPZ_SHA256 = "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"


def load_data(path="boston_housing.npz", test_split=0.2, seed=113):
    """Returns `(x_train, y_train), (x_test, y_test)`: float64 (n, 13) features and (n,) targets,
    shuffled with `np.random.RandomState(seed)`, the last `test_split` of them the test set. The
    file `boston_housing/<path>` comes from LAMINA_DATA_DIR or the cache, else is downloaded from
    Keras's URL and checked against its sha256."""
    _regression.check_split("boston_housing.load_data", test_split)
    x, y = _regression.load_xy("boston_housing", path, "boston_housing.npz", NPZ_SHA256)
    return _regression.shuffle_and_split(x, y, test_split, seed)

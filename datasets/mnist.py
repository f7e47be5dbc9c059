"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 uint8, labels 0-9."""
from ._files import fetch
from ._idx import read_idx

BASE_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def load_data(path="mnist"):
    """Returns `(x_train, y_train), (x_test, y_test)` as Keras does: uint8 images of shape
    (N, 28, 28) and uint8 labels of shape (N,). Files are read from LAMINA_DATA_DIR/mnist or
    the cache, else downloaded and checked against their sha256."""
    arrays = [read_idx(fetch(path, name, BASE_URL + name, sha)) for name, sha in FILES.items()]
    x_train, y_train, x_test, y_test = arrays
    return (x_train, y_train), (x_test, y_test)

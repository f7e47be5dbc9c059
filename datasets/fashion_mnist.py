"""Fashion-MNIST: Zalando's 28x28 grayscale clothing images, 10 classes, MNIST's layout."""
from ._files import fetch
from ._idx import read_idx

BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FILES = {
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
}


def load_data(path="fashion-mnist"):
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 (N, 28, 28) images, uint8 labels."""
    y_train, x_train, y_test, x_test = [read_idx(fetch(path, n, BASE_URL + n, s)) for n, s in FILES.items()]
    return (x_train, y_train), (x_test, y_test)

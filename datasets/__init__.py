"""Datasets with Keras's `load_data()` signatures. Files come from LAMINA_DATA_DIR, the cache
(~/.lamina/datasets), or a checked download. `image_dataset_from_directory` reads a folder of
images (one sub-folder per class) as Keras does."""
from . import (boston_housing, california_housing, cifar10, cifar100, fashion_mnist, imdb, mnist, ptb,  # noqa: F401
               reuters, sentence_pairs)
from ._files import cache_dir, fetch  # noqa: F401
from .image_folder import ImageDataset, image_dataset_from_directory  # noqa: F401

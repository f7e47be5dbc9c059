"""Data parallelism: `MirroredStrategy` over the devices of one machine, and
`MultiWorkerMirroredStrategy` over processes and machines through MPI (mpi4py). Model
parallelism needs no strategy: place layers with `with lamina.device(d):`, and pipeline them
with `fit(..., micro_batches=M)`."""
from .strategy import Strategy, get_strategy, has_strategy  # noqa: F401
from .mirrored import MirroredStrategy  # noqa: F401
from .multi_worker import MultiWorkerMirroredStrategy  # noqa: F401  (imports mpi4py only when made)

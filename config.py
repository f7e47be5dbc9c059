"""Process-wide settings: threads per device, threads of the default device, and Keras's
`keras.config` defaults (epsilon, floatx, image_data_format, the dtype policy, interactive logging).

    lamina.config.set_cpu_threads_per_device(1)   # two CPU devices on a 2-core machine: one core each
"""
from ._progbar import disable_interactive_logging, enable_interactive_logging, is_interactive_logging_enabled  # noqa: F401
from .backend import _cpu
from .backend.settings import (backend, epsilon, floatx, image_data_format, set_epsilon, set_floatx,  # noqa: F401
                               set_image_data_format, max_epochs, max_steps_per_epoch, set_max_epochs,
                               set_max_steps_per_epoch, enable_flash_attention, disable_flash_attention,
                               is_flash_attention_enabled)
from .backend.device import get_cpu_threads_per_device, set_cpu_threads_per_device  # noqa: F401
from .backend.device import enable_tensor_float_32_execution, tensor_float_32_execution_enabled  # noqa: F401
from .dtype_policies import dtype_policy, set_dtype_policy  # noqa: F401
from .saving import enable_unsafe_deserialization  # noqa: F401
from ._traceback import (disable_traceback_filtering, enable_traceback_filtering,  # noqa: F401
                         is_traceback_filtering_enabled)


def set_num_threads(threads):
    """Threads of every device's kernels by default (LAMINA_NUM_THREADS; all cores otherwise)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"set_num_threads: expected a number of threads >= 1, received {threads!r}")
    _cpu.set_num_threads(threads)


def get_num_threads():
    """Threads the calling thread's kernels use."""
    return _cpu.num_threads()

"""Debugging switches, as tf.debugging's.

    lamina.debugging.set_log_device_placement(True)   # prints the device each layer call runs on

LAMINA_LOG_DEVICE_PLACEMENT=1 turns the log on from the start; LAMINA_LAUNCH_BLOCKING=1 makes
every device run its kernels on the calling thread, so a kernel's error is raised where it began.
"""
from .backend.device import get_log_device_placement, set_log_device_placement  # noqa: F401

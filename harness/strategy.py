"""Devices and the distribution strategy of one trial, set up inside its worker process."""

from __future__ import annotations

import logging

from harness.job import ResourcesSpec

log = logging.getLogger(__name__)
_configured = False


def configure_devices(resources: ResourcesSpec) -> None:
    """Threads, GPU memory growth and optional logical CPU devices; once per process.

    Must run before TensorFlow initialises its devices, so a warm worker that already ran a
    trial keeps its first configuration (resources are the same for every trial of a job).
    """
    global _configured
    if _configured:
        return
    import tensorflow as tf

    threads = max(1, int(resources.cpus_per_trial))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    for gpu in tf.config.list_physical_devices("GPU"):
        # Several trials may share one GPU through fractional GPU resources.
        tf.config.experimental.set_memory_growth(gpu, True)
    if resources.logical_cpu_devices and resources.logical_cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * resources.logical_cpu_devices
        )
    _configured = True


# One MirroredStrategy per device set for the process's life. A warm worker's next trial with a
# new strategy over the same devices numbered its collectives from the start again, and
# TensorFlow's runtime, which remembers the earlier ones, failed it: "Shape mismatch in the
# collective instance 100". One strategy keeps numbering on across trials.
_mirrored: dict[tuple[str, ...], object] = {}


def make_strategy(resources: ResourcesSpec):
    """MirroredStrategy over the visible GPUs (or logical CPUs when asked); else the default."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    devices = gpus if len(gpus) > 1 else tf.config.list_logical_devices("CPU")
    if len(gpus) > 1 or (resources.logical_cpu_devices and len(devices) > 1):
        names = tuple(d.name for d in devices)
        if names not in _mirrored:
            _mirrored[names] = tf.distribute.MirroredStrategy(list(names))
        return _mirrored[names]
    return tf.distribute.get_strategy()


def keep_driver_off_gpus() -> None:
    """The driver builds models only to discover the search space: it must never claim a GPU
    the trials need. Called before it first touches TensorFlow's devices."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # devices already initialised in this process (in-process tests)
        log.info("devices already initialised; GPUs stay as they are")

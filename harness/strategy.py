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


def make_strategy(resources: ResourcesSpec):
    """MirroredStrategy over the visible GPUs (or logical CPUs when asked); else the default."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    cpus = tf.config.list_logical_devices("CPU")
    if resources.logical_cpu_devices and len(cpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()


def keep_driver_off_gpus() -> None:
    """The driver builds models only to discover the search space: it must never claim a GPU
    the trials need. Called before it first touches TensorFlow's devices."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # devices already initialised in this process (in-process tests)
        log.info("devices already initialised; GPUs stay as they are")

"""Where code runs: the device and precision of a run, and the process group of a torchrun job — the ground
floor that pipelines, training and batches all stand on (it imports nothing of theirs)."""

from mmgen.runtime.device import PRECISIONS, Compute, select_compute, select_device, select_precision
from mmgen.runtime.processes import Processes

__all__ = ["PRECISIONS", "Compute", "Processes", "select_compute", "select_device", "select_precision"]

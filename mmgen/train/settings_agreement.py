"""What the processes of a torchrun job must agree on before they train: each one read its own command line and
config file, and one whose settings differ (a flag given to one rank) trained to the end and failed there, on
weights that differed; one that refused its settings exited alone, leaving the others waiting to join it."""

from __future__ import annotations

import dataclasses
from typing import Any

from mmgen.errors import MmgenError, UsageError
from mmgen.runtime import processes
from mmgen.train.config import FinetuneConfig

# Each process's own: where it caches decoded clips, how many loader workers it runs, whether it recomputes
# activations to save memory. Nothing else of the run's config may differ between processes.
PER_PROCESS = frozenset({"cache_dir", "num_workers", "gradient_checkpointing"})


def shared_settings(config: FinetuneConfig) -> dict[str, Any]:
    """The settings every process of the job must have alike."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in PER_PROCESS}


def agree(refusal: MmgenError | None, config: FinetuneConfig | None) -> None:
    """Before the job's processes join: where any refused its settings, every process raises the first refusal
    (Processes.gather_or_fail: said once, by rank 0, every process exiting with its code); where their shared
    settings differ, a UsageError naming the first that differs and each process's value, said once (exit 2)."""
    here = processes.before_joining()
    heard = here.gather_or_fail(None if config is None else shared_settings(config), refusal)
    for name in heard[0]:
        values = [settings[name] for settings in heard]
        if any(value != values[0] for value in values):
            said = ", ".join(f"rank {rank}: {value!r}" for rank, value in enumerate(values))
            different = UsageError(f"the processes of this torchrun job were given different {name} ({said})",
                                   hint="give every process the same command line and config file")
            different.every_process = True
            raise different

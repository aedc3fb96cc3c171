"""What the processes of a torchrun job must agree on before they train: each one read its own command line and
config file, and one whose settings differ (a flag given to one rank) trained to the end and failed there, on
weights that differed; one that refused its settings exited alone, leaving the others waiting to join it."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mmgen.errors import MmgenError, UsageError
from mmgen.runtime import processes
from mmgen.train.config import FinetuneConfig

# Each process's own: where it caches decoded clips, how many loader workers it runs, whether it recomputes
# activations to save memory. Nothing else of the run's config may differ between processes.
PER_PROCESS = frozenset({"cache_dir", "num_workers", "gradient_checkpointing"})


def shared_settings(config: FinetuneConfig) -> dict[str, Any]:
    """The settings every process of the job must have alike."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in PER_PROCESS}


class Word(NamedTuple):
    """What a process says at the agreement."""

    folders: dict[str, str | None]  # the run folder and the clips it was given, as absolute paths (_resolved)
    file_system: str  # where those paths mean one folder (_file_system)
    settings: dict[str, Any]  # shared_settings


def agree(refusal: MmgenError | None, config: FinetuneConfig | None,
          folders: dict[str, str | Path | None] | None = None) -> None:
    """Before the job's processes join: where any refused its settings, every process raises the first refusal
    (Processes.gather_or_fail: said once, by rank 0, every process exiting with its code); where they were given
    different folders (`folders`: the run folder and the clips, by the names the command line gives them), or their
    shared settings differ, a UsageError naming the first that differs and each process's value, said once (exit
    2). Folders are compared as absolute paths, between processes that see one file system (_file_system): on
    machines of their own, a shared file system may be mounted at other paths."""
    here = processes.before_joining()
    mine = None if config is None else Word(_resolved(folders or {}), _file_system(), shared_settings(config))
    heard: list[Word] = here.gather_or_fail(mine, refusal)
    for seen in dict.fromkeys(word.file_system for word in heard):  # each file system's (every process decides alike)
        _same_everywhere({rank: word.folders for rank, word in enumerate(heard) if word.file_system == seen},
                         shown=lambda folder: "not given" if folder is None else repr(folder))
    _same_everywhere({rank: word.settings for rank, word in enumerate(heard)}, shown=repr)


def hand_over(refusal: MmgenError) -> None:
    """A refusal this process met before it had settings to agree on (its own command line's mistake: `--steps abc`
    given to one rank), handed to the others at the agreement, where rank 0 says it and every process exits with
    its code. Kept to itself, rank 0 (whose command line was fine) waited at the agreement for this process until
    torchrun stopped it, and nobody said the mistake."""
    try:
        agree(refusal, None)
    except MmgenError:  # its own, or another's before it in rank order: rank 0 says it
        pass


class ShownInstead(UsageError):
    """A process of the job that was given --help or --version, and printed it (rank 0 alone does), not trained."""


def shown_instead(flag: str) -> int:
    """The exit code of a process of a job given `flag` (--help, --version), which printed it instead of training: 0
    where every process was given it. Where the others were given a run, they waited at the agreement for it (rank 0
    silent for half an hour): it hands them a refusal there, which rank 0 says, every process exiting 2."""
    here = processes.before_joining()
    mine = ShownInstead(f"rank {here.rank} of this torchrun job was given {flag}, the others a run",
                        hint="give every process the same command line")
    heard = here.gather((None, mine))
    if all(isinstance(failed, ShownInstead) for _, failed in heard):
        return 0
    first = next(failed for _, failed in heard if failed is not None)  # in rank order, as gather_or_fail raises it
    first.every_process = True
    raise first


def _same_everywhere(given: dict[int, dict[str, Any]], shown: Callable[[Any], str]) -> None:
    """UsageError naming the first setting whose value differs between the processes of `given` ({rank: settings}),
    and each one's value."""
    first = next(iter(given.values()))
    for name in first:
        values = {rank: settings[name] for rank, settings in given.items()}
        if any(value != first[name] for value in values.values()):
            said = ", ".join(f"rank {rank}: {shown(value)}" for rank, value in values.items())
            different = UsageError(f"the processes of this torchrun job were given different {name} ({said})",
                                   hint="give every process the same command line and config file")
            different.every_process = True
            raise different


def _resolved(folders: dict[str, str | Path | None]) -> dict[str, str | None]:
    """Each folder as an absolute path with its links followed: `clips` read from another working folder is
    another folder, and a link to the same one is the same (a link that loops is left as it is)."""
    return {name: None if folder is None else os.path.realpath(folder) for name, folder in folders.items()}


def _file_system() -> str:
    """Which processes see one file system alike: those of one kernel boot and one mount namespace (on Linux;
    containers on one machine may share its host name, and mount a folder at paths of their own), or else of one
    host name. Processes on other machines may see a shared file system at other paths: theirs are not compared."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            return f"{boot.read().strip()} {os.readlink('/proc/self/ns/mnt')}"
    except OSError:
        return socket.gethostname()

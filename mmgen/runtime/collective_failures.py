"""What a torchrun job's failed collective (a gradient's sum, a gather, a barrier) means for its user: one line naming
the rank that met it and what happened, in place of gloo's or NCCL's raw text (`[…/pair.cc:553] Connection closed
by peer … GLHF! 🏖️`, `DistBackendError: NCCL communicator was aborted on rank 1.`). Standard library only: torch's
errors are known by their class names."""

from __future__ import annotations

import os
import re

from mmgen.errors import PeerEnded, UsageError
from mmgen.runtime import torchrun

# The other end went away: gloo's `Connection closed by peer`, `Connection reset by peer`; NCCL's `remote process
# exited`; torch's DistNetworkError (its store's connection lost: matched by name)
_PEER_GONE = re.compile(r"Connection closed by peer|Connection reset by peer|remote process exited")
# The other end never answered: gloo's `Timed out waiting 1800000ms for recv operation to complete` and `Application
# timeout caused pair closure`; NCCL's `WorkNCCL(…, Timeout(ms)=1800000) ran for … before timing out`; the store's
# `wait timeout after 1800000ms`, `Socket Timeout`
_TIMED_OUT = re.compile(r"Timed out waiting (\d+)ms|Timeout\(ms\)=(\d+)|timeout after (\d+) ?ms|"
                        r"Application timeout caused pair closure|Socket Timeout", re.IGNORECASE)
_SAID_WHERE = re.compile(r"^(\[[^\]]*\]\s*)+|^NCCL error in: [^,]*, |, NCCL version [\d.]+.*$")  # where, not what
_DETAIL_MAX = 160


def collective_failure(error: BaseException) -> PeerEnded | None:
    """The one line for `error` where it is a collective's failure: torch.distributed's own errors (DistBackendError,
    DistStoreError, DistNetworkError: any DistError) wherever they come from, and gloo's plain RuntimeErrors of a peer
    gone or timed out within a torchrun job of several processes — outside one, `Socket Timeout` or `Connection reset
    by peer` is some library's own error, not a peer's. Exit 1, said by each process that met it (the one that
    failed may be rank 0). None for any other error."""
    distributed = any(kind.__name__ == "DistError" for kind in type(error).__mro__)
    if not distributed and not (isinstance(error, RuntimeError) and _in_a_job()):
        return None
    text = str(error).strip()
    if _PEER_GONE.search(text) or type(error).__name__ == "DistNetworkError":
        return PeerEnded(f"{_rank()}another process of the job ended (its own output says why)")
    if timed_out := _TIMED_OUT.search(text):
        waited = next((int(ms) for ms in timed_out.groups() if ms), None)
        within = f" within {_duration(waited)}, the job's timeout" if waited else " within the job's timeout"
        return PeerEnded(f"{_rank()}another process of the job did not answer{within}: it hangs or is stuck (its own "
                         "output says why)")
    if not distributed:
        return None
    return PeerEnded(f"{_rank()}a collective operation of the job failed ({_detail(text)}): another process may have "
                     "ended, or the network between them failed (each process's own output says why)")


def _in_a_job() -> bool:
    """Whether this process is one of a torchrun job's several (its environment's WORLD_SIZE above 1)."""
    try:
        return torchrun.place()[1] > 1
    except UsageError:  # a job's environment it could not read: WORLD_SIZE said several, or could not be read
        return os.environ.get("WORLD_SIZE", "").strip() not in ("", "1")


def _rank() -> str:
    """`rank 1 of 4: `, the process saying the line (each one that meets a failed collective says its own)."""
    try:
        rank, size, _ = torchrun.place()
    except UsageError:  # a job's environment it could not read: the line without it
        return ""
    return f"rank {rank} of {size}: " if size > 1 else ""


def _duration(ms: int) -> str:
    return f"{ms / 60000:g} min" if ms >= 60000 else f"{ms / 1000:g} s"


def _detail(text: str) -> str:
    """What torch's text says happened, without where in its sources it was said: its first line, shortened."""
    line = _SAID_WHERE.sub("", text.splitlines()[0] if text else "").strip().rstrip(".") or "no reason given"
    return line if len(line) <= _DETAIL_MAX else line[: _DETAIL_MAX - 1].rstrip() + "…"

"""Fetching a file by name from a public Google Drive folder (how the paper's checkpoints are published), with
`gdown`: list the folder, download the file by its id into the model's cache folder, resuming an interrupted
transfer. Every way Drive says no becomes one ModelNotFound/UsageError line that says what to do instead.

The caller holds the model's cache lock. gdown writes `<part>` through its own temporary `<part>XXXXXXXX.part`
beside it (resumed by the next pull), renaming it to `<part>` once the transfer is complete; nothing here
decides whether the bytes are any good — the caller checks and converts them.
"""

from __future__ import annotations

import glob
from pathlib import Path

from mmgen.errors import MmgenError, ModelNotFound, UsageError
from mmgen.weights.download import (
    RESUME,
    Cap,
    RetryPolicy,
    TooLarge,
    check_space,
    offline,
    started,
    unreachable,
)
from mmgen.weights.progress import ByteProgress
from mmgen.weights.registry import DriveFile

_QUOTA = "too many users have viewed or downloaded this file recently"
_HTML_HEAD = (b"<!doctype html", b"<html", b"<head", b"<!--")


def by_hand(drive: DriveFile, name: str) -> str:
    """The hint for getting the file without mmgen's help."""
    return (
        f"download {drive.file} from {drive.folder_url} in a browser, then run "
        f"`mmgen models import {drive.file} --name {name}`"
    )


def fetch(drive: DriveFile, part: Path, *, name: str, quiet: bool = False, size: int | None = None) -> Path:
    """Download `drive.file` into `part` (resuming gdown's temporary beside it) and return `part`. No more than
    `size` bytes (the size trusted on first use, when known) are taken, else no more than the response states (a
    disk too small for it is refused at once, its temporary kept to resume), else no more than download.Cap allows a
    file of unknown size: past it the transfer stops and its temporary is deleted."""
    if offline():  # before importing gdown: importing requests/urllib3 already opens a socket
        raise ModelNotFound(
            f"{name}: weights are not in the cache and MMGEN_OFFLINE=1 forbids downloading",
            hint=f"on a connected machine, {by_hand(drive, name)}",
        )
    import gdown
    import requests

    policy = RetryPolicy.from_env()
    try:
        file_id = _file_id(drive, name, policy)
        part.parent.mkdir(parents=True, exist_ok=True)
        kept = sum(p.stat().st_size for p in _partials(part))
        cap = Cap.of(size, part.parent, kept)
        with ByteProgress(f"downloading {name} ({drive.file} from Google Drive)", quiet) as progress:

            def capped(done: int, total: int | None) -> None:
                nonlocal cap
                if not cap.stated and total is not None:  # the response's size, known once it comes (gdown's total)
                    check_space(part, total - done, hint=f"free some space in {part.parent}, then {RESUME}")
                    cap = Cap.of(total, part.parent)
                cap.check(done)
                progress.to(done, total, kept)

            gdown.download(
                id=file_id,
                output=str(part),
                quiet=True,
                resume=True,
                use_cookies=False,  # never read or write ~/.cache/gdown/cookies.txt
                timeout=policy.timeout,
                retries=policy.retries,
                progress=capped,
            )
    except TooLarge as e:
        # Deleted, as a URL's download is (download.download): with no size stated, what came may be an endless
        # stream's, and kept it would hold the disk at FREE_MARGIN free.
        for partial in _partials(part):
            partial.unlink(missing_ok=True)
        if e.stated:
            hint = (f"nothing was cached; if the authors replaced the file on purpose, `mmgen models rm {name} "
                    "--forget` trusts the next one")
        elif cap.room:
            hint = f"free some space in {part.parent}, then run the same command again"
        else:  # MAX_UNSIZED: no free space makes mmgen take more of a file whose size Drive does not state
            hint = by_hand(drive, name)
        raise UsageError(f"{name}: {drive.file} from {drive.folder_url} {e}; deleted the download", hint=hint) from None
    except gdown.exceptions.FileURLRetrievalError as e:
        raise _refused(drive, name, str(e)) from None
    except (gdown.exceptions.DownloadError, requests.RequestException) as e:
        reason = unreachable(e)
        if reason is not None:  # no connection at all: nothing came, there is nothing to resume
            raise MmgenError(f"{name}: {reason}", hint=RESUME if started(part, *_partials(part)) else
                             f"check the network connection or proxy, or {by_hand(drive, name)}") from None
        reason = " ".join(str(e).split())
        raise MmgenError(f"{name}: download of {drive.file} from Google Drive failed ({reason})",
                         hint=RESUME if started(part, *_partials(part)) else f"try again later, or {by_hand(drive, name)}",
                         ) from None
    if _looks_like_html(part):
        part.unlink()
        raise UsageError(
            f"{name}: Google Drive sent a web page instead of {drive.file}; nothing was cached",
            hint=f"try again later, or {by_hand(drive, name)}",
        )
    return part


def _partials(part: Path) -> list[Path]:
    """gdown's temporaries for `part`: its name, 8 random characters, `.part`."""
    return list(part.parent.glob(f"{glob.escape(part.name)}{'?' * 8}.part"))


def _file_id(drive: DriveFile, name: str, policy: RetryPolicy) -> str:
    """The id of `drive.file` in the folder's listing."""
    import gdown

    try:
        listing = gdown.download_folder(
            id=drive.folder, skip_download=True, quiet=True, use_cookies=False, timeout=policy.timeout
        )
    except gdown.exceptions.DownloadError as e:
        reason = " ".join(str(e).split())
        raise UsageError(
            f"{name}: cannot list the Google Drive folder {drive.folder_url} ({reason})",
            hint=f"try again later, or {by_hand(drive, name)}",
        ) from None
    found = {Path(entry.path).name: entry.id for entry in listing}
    if drive.file not in found:
        held = ", ".join(sorted(found)) or "nothing"
        raise ModelNotFound(
            f"{name}: the Google Drive folder {drive.folder_url} has no file {drive.file} (it holds {held})",
            hint="the authors may have moved it; if you find it elsewhere, run "
            f"`mmgen models import FILE --name {name}` or `mmgen models pull {name} --url URL --sha256 HEX`",
        )
    return found[drive.file]


def _refused(drive: DriveFile, name: str, reason: str) -> UsageError:
    """Drive answered with a page, not the file: over quota, or something gdown could not follow."""
    text = " ".join(reason.split())
    if _QUOTA in text.lower():
        return UsageError(
            f"{name}: Google Drive refuses {drive.file} for now: too many users have viewed or downloaded "
            "this file recently; nothing was cached",
            hint=f"retry later (the limit resets within 24 hours), or {by_hand(drive, name)}",
        )
    return UsageError(
        f"{name}: Google Drive sent a web page instead of {drive.file}; nothing was cached",
        hint=f"try again later, or {by_hand(drive, name)}",
    )


def _looks_like_html(path: Path) -> bool:
    """A web page saved as the file (a proxy's or Drive's page with a download header)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith(_HTML_HEAD)

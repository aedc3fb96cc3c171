"""Fetching weight files into a `.part` file: HTTP(S) with Range resume and retries with backoff, or a copy
from a file:// URL; the sha256 is computed while the bytes arrive and must match before anyone uses them.

The caller holds the model's cache lock, so one process at a time appends to a given `.part` file and a
later pull can resume what an interrupted one left behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

from mmgen import environment
from mmgen.errors import ChecksumMismatch, ConfigError, MmgenError, ModelNotFound, UsageError
from mmgen.terminal import size_text
from mmgen.weights.progress import ByteProgress
from mmgen.weights.urls import check_url

if TYPE_CHECKING:
    import requests

_CHUNK = 1 << 16  # bytes per read: a dropped connection loses at most the chunk in flight
_MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# A file whose size nobody states — no `size:` in its registry entry, no Content-Length from the server — is taken
# up to MAX_UNSIZED bytes (13× the largest released model, a 1.2 GB upsampler), and never so far that the cache's
# disk would keep less than FREE_MARGIN free: an endless or broken stream stops there, not at a full disk.
MAX_UNSIZED = 16 * 10**9
FREE_MARGIN = 10**9
RESUME = "run the same command again to resume where it stopped"  # the hint where a download's start is kept


def offline() -> bool:
    """MMGEN_OFFLINE=1: never open a socket (file:// URLs and the cache still work)."""
    return bool(environment.flag(environment.OFFLINE))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL before moving on to the next."""

    retries: int = 4  # further tries after the first, on dropped connections, timeouts, 5xx and 429
    backoff: float = 1.0  # seconds before the first retry, doubled for each further one
    timeout: float = 30.0  # seconds to connect, and the longest wait for the next bytes

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults, overridden by MMGEN_DOWNLOAD_RETRIES / MMGEN_DOWNLOAD_BACKOFF (read when called)."""
        policy = cls()
        for var, field, kind in (
            ("MMGEN_DOWNLOAD_RETRIES", "retries", int),
            ("MMGEN_DOWNLOAD_BACKOFF", "backoff", float),
        ):
            text = os.environ.get(var)
            if text is None:
                continue
            try:
                value = kind(text)
            except ValueError:
                value = -1
            if value < 0:
                raise ConfigError(f"${var}: expected a non-negative {kind.__name__}, got {text!r}")
            policy = RetryPolicy(**{**policy.__dict__, field: value})
        return policy


class _Retry(Exception):
    """A transient failure: try the same URL again (resuming)."""


class _Unavailable(Exception):
    """This URL will not serve the file (4xx, missing local file): try the next one."""


class _GaveUp(Exception):
    """Transient failures outlasted the retries."""


class TooLarge(Exception):
    """The URL sent more bytes than the file has (`stated`: not the file), or than a file of unknown size may
    take (an endless stream would fill the disk)."""

    def __init__(self, message: str, stated: bool = True):
        super().__init__(message)
        self.stated = stated


@dataclass(frozen=True)
class Cap:
    """The most bytes a download may hold, and what a server that sends more is told."""

    limit: int
    why: str
    stated: bool = True  # the file's own size: more is not the file; else a bound on a size nobody stated
    room: bool = False  # the bound is the disk's free space (FREE_MARGIN kept), not MAX_UNSIZED: freeing space helps

    @classmethod
    def of(cls, total: int | None, folder: Path, have: int = 0) -> Cap:
        """The file's `total` bytes when known; else MAX_UNSIZED, or less where the disk of `folder` (which has
        `have` bytes of this download already) would keep under FREE_MARGIN free."""
        if total is not None:
            return cls(total, f"the {total} bytes the file has")
        room = have + shutil.disk_usage(folder).free - FREE_MARGIN
        if room < MAX_UNSIZED:
            return cls(max(room, 0), f"{size_text(max(room, 0))} without stating its size: more would leave less "
                       f"than {size_text(FREE_MARGIN)} free in {folder}", stated=False, room=True)
        return cls(MAX_UNSIZED, f"{size_text(MAX_UNSIZED)} without stating its size, the most mmgen takes of a file "
                   "of unknown size", stated=False)

    def check(self, size: int) -> None:
        """TooLarge if a download of `size` bytes is past the cap."""
        if size > self.limit:
            raise TooLarge(f"sent more than {self.why}", self.stated)


class _Part:
    """The `.part` file and a running sha256 of its bytes, so a resume hashes the old prefix only once."""

    def __init__(self, path: Path):
        self.path = path
        self.digest = hashlib.sha256()
        self.size = 0
        if path.is_file():
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    self.update(chunk)

    def update(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)

    def reset(self) -> None:
        self.path.write_bytes(b"")
        self.digest, self.size = hashlib.sha256(), 0


def unreachable(error: BaseException) -> str | None:
    """`cannot reach HOST:PORT: connection refused` for a requests/urllib3 error whose connection never opened (refused,
    no such host, no route, a proxy that is not there): one line, not urllib3's nested repr; None for anything else
    (a transfer cut short, a timeout while reading)."""
    from requests.exceptions import ProxyError as RequestsProxyError
    from urllib3.exceptions import NewConnectionError, ProxyError

    seen, todo, proxy = set(), [error], False
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        proxy = proxy or isinstance(e, ProxyError | RequestsProxyError)
        if isinstance(e, NewConnectionError):
            cause = e.__cause__ if isinstance(e.__cause__, OSError) else None
            why = (cause.strerror or str(cause)) if cause is not None else "no connection"
            where = f"{e.conn.host}:{e.conn.port}" if getattr(e, "conn", None) is not None else "the server"
            return f"cannot reach {where}{' (the proxy)' if proxy else ''}: {why[:1].lower()}{why[1:]}"
        todo += [x for x in (*e.args, getattr(e, "reason", None), e.__cause__, e.__context__)
                 if isinstance(x, BaseException)]
    return None


def download(
    urls: tuple[str, ...] | list[str],
    part: Path,
    sha256: str,
    *,
    label: str,
    size: int | None = None,
    policy: RetryPolicy | None = None,
    quiet: bool = False,
) -> Path:
    """Fetch the file with this sha256 (and `size` bytes, when the registry knows it) from the first URL that
    serves it into `part` (resuming what is there) and return `part`. No more than the file's size is taken —
    `size`, else what the server says: a URL that sends more, like one whose bytes have the wrong checksum,
    has its part deleted; if no URL serves the file, ChecksumMismatch names what each sent."""
    policy = policy or RetryPolicy.from_env()
    part.parent.mkdir(parents=True, exist_ok=True)
    unavailable, transient, mismatches, unsized = [], [], [], []
    with ByteProgress(f"downloading {label}", quiet) as progress:
        for url in urls:
            if offline() and urlsplit(url).scheme != "file":
                unavailable.append(f"{url} (not fetched: MMGEN_OFFLINE=1)")
                continue
            state = _Part(part)
            if size is not None and state.size > size:  # left by a URL that sent too much: garbage
                state.reset()
            try:
                _fetch(url, state, size, policy, progress)
            except TooLarge as e:
                part.unlink(missing_ok=True)
                (mismatches if e.stated else unsized).append(f"{url}: {e}")
                progress.note(f"{url} {e}; deleted the download")
                continue
            except _Unavailable as e:
                unavailable.append(f"{url} ({e})")
                continue
            except _GaveUp as e:
                transient.append(f"{url} ({e})")
                continue
            actual = state.digest.hexdigest()
            if actual == sha256:
                return part
            part.unlink(missing_ok=True)
            mismatches.append(f"{url}: expected sha256 {sha256}, got {actual}")
            progress.note(f"checksum mismatch for {url}; deleted the download")
    if mismatches:
        raise ChecksumMismatch(
            f"{label}: the downloaded file is not the one the registry names ({'; '.join(mismatches)})",
            hint="nothing was cached; the mirror may be corrupt or the entry's sha256 wrong",
        )
    if unsized:
        raise UsageError(
            f"{label}: {'; '.join(unsized)}; nothing was kept",
            hint="free some space in the cache, or, if the file really is that large, give its registry entry "
            "`size:` (bytes)",
        )
    if transient:
        raise MmgenError(
            f"{label}: download failed: {'; '.join(transient + unavailable)}",
            hint=RESUME if started(part) else "check the network "
            f"connection, or fetch {urls[0]} on a connected machine, then run `mmgen models import FILE --name {label}`",
        )
    raise ModelNotFound(f"{label}: weights not available from {'; '.join(unavailable)}")


def started(*parts: Path) -> bool:
    """Whether a download left bytes to resume from in any of `parts`."""
    return any(p.is_file() and p.stat().st_size > 0 for p in parts)


def _fetch(url: str, part: _Part, size: int | None, policy: RetryPolicy, progress: ByteProgress) -> None:
    if urlsplit(url).scheme == "file":
        _copy_local(url, part, size, progress)
        return
    # Imported here, not at the top: importing urllib3 opens a socket (its IPv6 probe binds ::1), and a
    # command that never downloads (MMGEN_OFFLINE=1, cached or bundled models) opens none at all.
    import requests

    reason = ""
    with requests.Session() as session:
        for attempt in range(policy.retries + 1):
            if attempt:
                delay = policy.backoff * 2 ** (attempt - 1)
                progress.note(f"{url}: {reason}; retry {attempt}/{policy.retries} in {delay:g} s")
                time.sleep(delay)
            try:
                _http_once(session, url, part, size, policy, progress)
                return
            except _Retry as e:
                reason = str(e)
    tries = policy.retries + 1
    raise _GaveUp(f"gave up after {tries} {'try' if tries == 1 else 'tries'}: {reason}")


def _http_once(
    session: requests.Session, url: str, part: _Part, size: int | None, policy: RetryPolicy, progress: ByteProgress
) -> None:
    """One request, appending to the part file; resumes with a Range request when it already holds bytes. Reads
    no further than the file's size: the registry's `size`, trusted over the server's word, else the server's."""
    import requests  # already loaded by _fetch; see there why not at the top

    headers = {"Accept-Encoding": "identity"}  # byte offsets must mean file offsets
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
    try:
        with _get(session, url, headers, policy.timeout) as response:
            status = response.status_code
            if status == 416:  # nothing after our offset: the part is complete (or wrong — the hash decides)
                return
            if status >= 500 or status in (408, 429):
                raise _Retry(f"HTTP {status} {response.reason}")
            if status >= 400:
                raise _Unavailable(f"HTTP {status} {response.reason}")
            said = _expected_total(response, part)
            total = size if size is not None else said
            if total is not None:
                check_space(part.path, total - part.size)
            cap = Cap.of(total, part.path.parent, part.size)
            progress.start(part.size, total)
            # A body shorter than its Content-Length is judged below (part.size != total), keeping what came;
            # urllib3 would raise and drop the last chunk, which is all of the file when the length lies.
            response.raw.enforce_content_length = False
            with open(part.path, "ab") as f:
                for chunk in response.iter_content(_CHUNK):
                    _append(f, part, chunk, cap, progress)
                    if part.size == total and said != total:  # all of it: what a wrong length promises is not read
                        break
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
        raise _Retry(unreachable(e) or f"connection lost after {part.size} bytes ({e.__class__.__name__})") from None
    if total is not None and part.size != total:
        raise _Retry(f"connection closed at byte {part.size} of {total}")


def _append(f, part: _Part, chunk: bytes, cap: Cap, progress: ByteProgress) -> None:
    """Write `chunk` to the part file, unless it takes the part past its cap (TooLarge)."""
    cap.check(part.size + len(chunk))
    f.write(chunk)
    part.update(chunk)
    progress.advance(len(chunk))


def _get(session: requests.Session, url: str, headers: dict[str, str], timeout: float) -> requests.Response:
    """GET that follows redirects only to URLs mmgen would fetch itself: an https mirror must not bounce the
    download to plain http (or anywhere else `check_url` refuses) before a byte is asked of it."""
    for _ in range(_MAX_REDIRECTS + 1):
        response = session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
        if not response.is_redirect:
            return response
        response.close()
        target = urljoin(url, response.headers["Location"])
        if urlsplit(target).scheme == "file":  # a remote server does not get to name files on this machine
            raise _Unavailable(f"redirected to a local file {target!r}")
        try:
            check_url(target)
        except ValueError as e:
            raise _Unavailable(f"redirected to an {e}") from None
        url = target
    raise _Unavailable(f"more than {_MAX_REDIRECTS} redirects")


def _expected_total(response: requests.Response, part: _Part) -> int | None:
    """The full file size, after making the part file agree with what the server is sending."""
    if response.status_code == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if not match or int(match[1]) != part.size:
            part.reset()
            raise _Retry("server answered a different range than asked; starting over")
        return int(match[3]) if match[3] != "*" else None
    if part.size:  # a 200 to a Range request: the server sends the whole file again
        part.reset()
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def check_space(path: Path, needed: int, hint: str | None = None) -> None:
    """UsageError (with `hint`) if the disk `path` is on has less than `needed` bytes free."""
    free = shutil.disk_usage(path.parent).free
    if needed > free:
        raise UsageError(
            f"not enough disk space in {path.parent}: need {size_text(needed)}, {size_text(free)} free", hint=hint
        )


def _copy_local(url: str, part: _Part, size: int | None, progress: ByteProgress) -> None:
    source = Path(url2pathname(urlsplit(url).path))
    if not source.is_file():
        raise _Unavailable("no such file")
    total = source.stat().st_size
    if size is not None and total > size:
        raise TooLarge(f"is {total} bytes, more than the {size} the file has")
    if part.size > total:
        part.reset()
    check_space(part.path, total - part.size)
    progress.start(part.size, total)
    cap = Cap.of(total, part.path.parent)
    with open(source, "rb") as src, open(part.path, "ab") as dst:
        src.seek(part.size)  # the rest of an interrupted copy (the sha256 checks the whole)
        while chunk := src.read(_CHUNK):
            _append(dst, part, chunk, cap, progress)

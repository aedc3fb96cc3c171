"""mmgen.locks, the one lock of mmgen: one holder at a time, even where a holder deletes its lock file as it leaves
(a cache entry's folder, the decoding of one clip) — on Linux's flock, and on Windows' msvcrt lock as a fake stands
in for it here."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from finetune_clips import TINY_FORMAT
from mmgen_cli import mmgen_env

from mmgen import lock_holders, locks, temporaries
from mmgen.data.clip_cache import ClipCache
from mmgen.errors import UsageError
from mmgen.lock_holders import Holder


def test_a_lock_file_its_last_holder_deleted_is_never_held_beside_the_one_made_after_it(tmp_path, monkeypatch):
    """The last holder of an entry's folder deletes the folder and its .lock as it leaves (weights.entry_lock).
    A process that had opened that .lock to wait on it then came to hold a file no longer there, while one arriving
    later made a new .lock and held that: both went on. Held, the file must be the one at the lock's name, or it is
    let go (and the lock taken again)."""
    path = tmp_path / "models" / "m" / ".lock"
    first = locks.acquire(path, make_folder=True)
    waiter = os.open(path, os.O_RDWR)  # opened the .lock, to wait on it
    first.remove()  # the first holder leaves, deleting the folder it leaves empty
    path.parent.rmdir()
    first.release()
    newcomer = locks.acquire(path, make_folder=True)  # a new .lock, held
    opened = [waiter]
    real_open = locks._open
    monkeypatch.setattr(locks, "_open", lambda *a: opened.pop() if opened else real_open(*a))
    try:
        assert locks._take(path, waiting=None) is None  # the deleted one let go, the newcomer's is held
        assert not opened
    finally:
        newcomer.release()
    assert locks._take(path, waiting=None) is not None


@pytest.mark.parametrize("umask", [0o002, 0o077])
def test_a_lock_file_made_has_the_mode_the_umask_gives_every_file_mmgen_makes(tmp_path, umask):
    """Lock files were made 0644 whatever the umask (a group-shared cache's umask 002: its outputs 0664, its locks
    not group-writable): 0666 less the umask, as outputs, the cache and imported weights are."""
    before = os.umask(umask)
    try:
        with locks.file_lock(tmp_path / "x.lock"):
            pass
    finally:
        os.umask(before)
    assert (tmp_path / "x.lock").stat().st_mode & 0o777 == 0o666 & ~umask


def test_two_runs_never_decode_one_clip_at_once(tmp_path, monkeypatch):
    """The clip cache's lock of a file was deleted after its holder let go: a run that waited on it then held that
    deleted file while a run arriving later made a new one and held it, and both decoded the clip ("the worst case
    is one file decoded twice"). A holder deletes the lock file while it holds it, and a waiter that comes to hold
    a deleted one takes the one there now: one decoder at a time."""
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"not decoded here")
    inside, most = [], []
    entered = {name: threading.Event() for name in "abc"}
    leave = {name: threading.Event() for name in "abc"}

    def decode_once(self, path, key, shard):
        me = threading.current_thread().name
        inside.append(me)
        most.append(len(inside))
        entered[me].set()
        leave[me].wait(10)
        inside.remove(me)
        return None, "unreadable", True

    def slow_unlink(path, missing_ok=False):  # a holder descheduled as it deletes its lock file: the race, made sure
        if path.suffix == ".lock":
            time.sleep(0.3)
        real_unlink(path, missing_ok=missing_ok)

    real_unlink = Path.unlink
    monkeypatch.setattr(ClipCache, "_decode_once", decode_once)
    monkeypatch.setattr(Path, "unlink", slow_unlink)
    runs = {name: threading.Thread(target=ClipCache(tmp_path / "clips", TINY_FORMAT).lookup, args=(source,),
                                   name=name, daemon=True) for name in "abc"}
    try:
        runs["a"].start()
        assert entered["a"].wait(10)
        runs["b"].start()
        assert not entered["b"].wait(0.3)  # b has opened a's lock file, and waits on it
        leave["a"].set()
        runs["a"].join(10)  # a has left, its lock file deleted
        assert entered["b"].wait(10)
        runs["c"].start()  # arrives while b decodes
        assert not entered["c"].wait(0.5)
        leave["b"].set()
        assert entered["c"].wait(10)
    finally:
        for name in "abc":
            leave[name].set()
        for run in runs.values():
            if run.is_alive() or run.ident is not None:
                run.join(10)
    assert max(most) == 1
    assert not list((tmp_path / "clips").glob("*.lock"))  # no lock file left behind either


class FakeMsvcrt:
    """msvcrt's byte locks as Windows keeps them, for this process: a file (by inode) is locked by one open
    descriptor at a time; a try while another holds it fails with EACCES, as msvcrt.locking's LK_NBLCK does."""

    LK_UNLCK, LK_NBLCK = 0, 2

    def __init__(self):
        self.holders: dict[int, int] = {}  # inode → the descriptor holding it
        self.tries = 0

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1
        inode = os.fstat(fd).st_ino
        if mode == self.LK_UNLCK:
            assert self.holders.pop(inode) == fd
            return
        self.tries += 1
        if self.holders.setdefault(inode, fd) != fd:
            raise OSError(errno.EACCES, "Permission denied")


@pytest.fixture
def windows(monkeypatch) -> FakeMsvcrt:
    """mmgen.locks' Windows branch, its one OS call (msvcrt.locking) made to a fake."""
    fake = FakeMsvcrt()
    monkeypatch.setattr(locks, "WINDOWS", True)
    monkeypatch.setattr(locks, "POLL_S", 0.01)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    return fake


def _taken_in_a_thread(path: Path, said: list) -> tuple[threading.Thread, list]:
    taken: list = []
    waiter = threading.Thread(target=lambda: taken.append(locks.acquire(path, waiting=lambda: said.append("waiting"))),
                              daemon=True)
    waiter.start()
    return waiter, taken


def _until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_on_windows_a_waiter_polls_until_the_holder_lets_go_and_a_busy_lock_is_said_at_once(windows, tmp_path):
    """Windows has no flock: msvcrt's lock is tried again every POLL_S for as long as another holds it, the wait said
    once; a lock that must not be waited for (a batch's output folder) is busy after one try."""
    path = tmp_path / ".lock"
    holder = locks.acquire(path)
    tries = windows.tries
    assert locks._take(path, waiting=None) is None and windows.tries == tries + 1
    said: list = []
    waiter, taken = _taken_in_a_thread(path, said)
    _until(lambda: windows.tries >= tries + 5)  # polling
    assert waiter.is_alive() and said == ["waiting"]
    holder.release()
    waiter.join(10)
    assert not waiter.is_alive() and said == ["waiting"]
    taken[0].release()
    assert windows.holders == {}  # each holder unlocked its file as it let go


def test_on_windows_a_waiter_that_comes_to_hold_a_deleted_lock_file_takes_the_one_there_now(windows, tmp_path):
    """The inode check on the Windows branch: a waiter polling a lock file its holder deleted (as the fake lets it:
    Windows itself refuses to delete an open file) gets that file once the holder lets go, lets it go again and
    waits for the newer one a later process made and holds."""
    path = tmp_path / ".lock"
    holder = locks.acquire(path)
    said: list = []
    waiter, taken = _taken_in_a_thread(path, said)
    _until(lambda: windows.tries >= 3)
    holder.remove()
    newcomer = locks.acquire(path)  # a new lock file, held
    holder.release()
    tries = windows.tries
    _until(lambda: windows.tries >= tries + 5)  # the deleted one taken, let go, the new one polled
    assert waiter.is_alive() and not taken
    assert list(windows.holders.values()) == [newcomer.fd]  # the deleted file was unlocked as it was let go
    newcomer.release()
    waiter.join(10)
    assert os.path.samestat(os.fstat(taken[0].fd), os.lstat(path)) and said == ["waiting"]
    taken[0].release()


def test_a_batch_folder_copied_with_hard_links_while_its_batch_runs_has_one_batch_in_each_folder(tmp_path):
    """`cp -al hl hl2` while a batch runs in hl shares its lock file with hl2: hl2's folder was "in use" (exit 2);
    then, with the copy's lock file put over hl's name as it was taken, a second batch ran into hl beside the first.
    Each folder's lock is its own whatever hard links there are: the copy runs while the original does, and each
    still has one holder at a time."""
    original, copy = tmp_path / "hl" / ".batch-running.lock", tmp_path / "hl2" / ".batch-running.lock"
    original.parent.mkdir()

    def busy(holder):
        return UsageError("in use")

    with locks.sole_holder(original, busy):  # the batch running in hl
        copy.parent.mkdir()
        os.link(original, copy)  # as `cp -al hl hl2` copies it
        with pytest.raises(UsageError), locks.sole_holder(original, busy):
            pass
        with locks.sole_holder(copy, busy):
            with pytest.raises(UsageError), locks.sole_holder(copy, busy):
                pass
            with pytest.raises(UsageError), locks.sole_holder(original, busy):
                pass
    assert sorted(os.listdir(copy.parent)) == [".batch-running.lock"]


def test_a_batch_refused_in_a_folder_copied_with_hard_links_is_told_that_folder_s_holder(tmp_path):
    """A project copied with `cp -al` while its batch ran: the copy's batch wrote its pid into the lock file the two
    folders shared, and a second batch into the original was told the copy's batch held it (`pid` of the wrong one).
    Taken, a shared lock file is made the folder's own first (its mode kept)."""
    original, copy = tmp_path / "hl" / ".batch-running.lock", tmp_path / "hl2" / ".batch-running.lock"
    original.parent.mkdir()
    holding = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; from mmgen import locks; "
                                "locks.acquire(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()",
                                str(original)], env=mmgen_env(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    told: list = []

    def busy(holder):
        told.append(holder)
        return UsageError("in use")

    try:
        assert holding.stdout.readline() == "held\n"  # the batch running in hl
        original.chmod(0o600)
        copy.parent.mkdir()
        os.link(original, copy)  # as `cp -al hl hl2` copies it
        with locks.sole_holder(copy, busy):  # the copy's batch
            with pytest.raises(UsageError), locks.sole_holder(original, busy):
                pass
    finally:
        holding.stdin.close()
        holding.wait(10)
    assert [holder.pid for holder in told] == [holding.pid]
    assert not copy.samefile(original) and copy.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(copy.parent)) == [".batch-running.lock"]  # no temporary left


@pytest.mark.skipif(sys.platform == "win32", reason="flock: an older mmgen's lock on Linux and macOS")
def test_an_older_mmgen_holding_a_lock_file_and_this_one_keep_each_other_out(tmp_path):
    """An older mmgen locks the whole file (flock, exclusive): a batch of this one is refused where it holds it, and
    it is refused where this one holds it, as each was before."""
    import fcntl

    path = tmp_path / ".batch-running.lock"

    def busy(holder):
        return UsageError("in use")

    older = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(older, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError), locks.sole_holder(path, busy):
            pass
        fcntl.flock(older, fcntl.LOCK_UN)
        with locks.sole_holder(path, busy), pytest.raises(BlockingIOError):
            fcntl.flock(older, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(older)


def _older_locks(monkeypatch):
    """mmgen.locks as mmgen 106cebc had it (a lock file is flocked whole; a hard-linked one is replaced under the
    folder's own exclusive flock), loaded from this repository's history."""
    import types

    shown = subprocess.run(["git", "show", "106cebc:mmgen/locks.py"], cwd=Path(__file__).parent, capture_output=True,
                           text=True)
    if shown.returncode != 0:
        pytest.skip("106cebc is not in this checkout's history")
    module = types.ModuleType("older_mmgen_locks")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # (its dataclasses look it up there)
    exec(compile(shown.stdout, "106cebc:mmgen/locks.py", "exec"), module.__dict__)
    return module


@pytest.mark.skipif(sys.platform == "win32", reason="flock: an older mmgen's lock on Linux and macOS")
def test_an_older_mmgen_waits_for_a_batch_of_this_one_in_a_folder_copied_with_hard_links(tmp_path, monkeypatch):
    """`cp -al L Lc` while this mmgen's batch ran in L, then 106cebc's `mmgen batch` in L: it found the lock file
    shared, renamed a fresh one over the name under the folder's flock and held that — and swept the running
    batch's temporaries, whose job failed. Now it waits for the folder until this one's batch lets go."""
    older = _older_locks(monkeypatch)
    original, copy = tmp_path / "L" / ".batch-running.lock", tmp_path / "Lc" / ".batch-running.lock"
    original.parent.mkdir()

    def busy(holder=None):
        return UsageError("in use")

    entered = threading.Event()

    def older_batch():
        with older.sole_holder(original, busy(None)):
            entered.set()

    with locks.sole_holder(original, busy):  # this mmgen's batch, running in L
        copy.parent.mkdir()
        os.link(original, copy)  # as `cp -al L Lc` copies it
        started = threading.Thread(target=older_batch)
        started.start()
        assert not entered.wait(0.5), "the older mmgen took L while this one's batch held it"
    started.join(5)
    assert entered.is_set()  # and it goes on once this batch is done


def test_a_lock_names_its_holder_while_that_process_lives(tmp_path):
    """A refusal or a wait said only "another mmgen process": the holder writes its pid and command into the lock
    file as it takes it, and one kept out names it — never a holder that is gone, whose file still names it."""
    path = tmp_path / ".lock"
    with locks.file_lock(path):
        found = lock_holders.holder(path)
        assert (found.pid, str(found)) == (os.getpid(), f"{found.command}, pid {os.getpid()}")
        assert found.command.startswith("python")  # (pytest's process; the command line's is `mmgen batch`)
    gone = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; from mmgen import locks; "
                             "locks.acquire(Path(sys.argv[1]))", str(path)], env=mmgen_env(tmp_path))
    assert gone.wait(30) == 0 and path.read_text().split()[0] == f"{temporaries.owner()}-{gone.pid}"
    assert lock_holders.holder(path) is None


def test_a_symbolic_link_at_a_lock_file_s_name_is_refused_naming_it(tmp_path):
    """A link at `out/.batch-running.lock` (or `.batch-manifest.lock`) failed with `OSError: [Errno 40] Too many
    levels of symbolic links` (exit 1), or a line naming the output folder. Never followed, it is named."""
    path = tmp_path / ".batch-running.lock"
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match=f"^{path} is a symbolic link, where mmgen keeps a lock file") as refused:
        locks.acquire(path)
    assert refused.value.exit_code == 2 and path.is_symlink() and not (tmp_path / "elsewhere").exists()


def _other_table() -> str:
    """An OWNER tag (mmgen.temporaries.owner) of a process table that is not this one's."""
    from mmgen.temporaries import owner

    return "0badf00d" if owner() != "0badf00d" else "0badf00e"


def test_a_holder_in_another_container_or_host_is_said_as_one_never_by_a_pid_of_this_machine(tmp_path, monkeypatch):
    """A batch in a container sharing the folder wrote `1 mmgen batch` (its pid 1), and one refused on the host was
    told `another mmgen batch (pid 1)` — init, which os.kill found alive. The line now says whose process table its
    pid is (OWNER-PID): another's is said as such and never probed; an older mmgen's bare pid is named only where
    /proc/locks shows that process holding the file."""
    path = tmp_path / ".batch-running.lock"
    with locks.file_lock(path):
        assert path.read_text() == f"{temporaries.owner()}-{os.getpid()} {lock_holders._command()}\n"
        assert lock_holders.holder(path) == Holder(os.getpid(), lock_holders._command())
        path.write_text(f"{_other_table()}-1 mmgen batch\n")
        with monkeypatch.context() as probed:
            probed.setattr(os, "kill", lambda pid, signal: pytest.fail(f"os.kill({pid}) of another table's pid"))
            found = lock_holders.holder(path)
        assert (found, str(found)) == (Holder(None, "mmgen batch"), "mmgen batch, in another container or host")
        if os.path.exists("/proc/locks"):  # (Linux) an older mmgen's line: PID COMMAND, of no known table
            path.write_text("1 mmgen batch\n")  # its pid 1 holds no lock on the file here
            assert lock_holders.holder(path) is None
            path.write_text(f"{os.getpid()} mmgen batch\n")  # this process, which holds it
            assert lock_holders.holder(path) == Holder(os.getpid(), "mmgen batch")


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="Linux's /proc/locks names a flock's holder")
def test_a_run_folder_held_by_a_process_this_one_cannot_see_is_said_to_be_in_another_container_or_host(
    tmp_path, monkeypatch
):
    """A finetune run folder's flock is named from /proc/locks, which lists no holder this process table cannot see
    (a container's, or the host's seen from a container): the refusal said only "another mmgen finetune". Held with
    no holder listed, it is another table's; held by one listed, that one's pid."""
    import fcntl

    from mmgen.train.run_folder import RunFolderLock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    held = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert lock_holders.flock_holder(held) == Holder(os.getpid(), "a process")
        (tmp_path / "locks").write_text("1: POSIX  ADVISORY  WRITE 77 00:00:1 0 EOF\n")  # none of this folder's
        monkeypatch.setattr(lock_holders, "PROC_LOCKS", str(tmp_path / "locks"))
        with pytest.raises(UsageError) as refused:
            RunFolderLock(run_dir).take()
    finally:
        os.close(held)
    assert str(refused.value).startswith(f"{run_dir} is in use: another mmgen finetune (in another container or host)"
                                         " is training in it")


def _refused_open(monkeypatch, name: str) -> None:
    """os.open refuses the file `name` as it refuses root's lock file (chmod 600) to its folder's owner: the suite may
    run as root, whom no mode refuses."""
    real = os.open

    def refusing(path, flags, *args, **kwargs):
        if Path(path).name == name:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


def test_a_lock_file_this_process_may_not_open_is_named_with_what_to_do(tmp_path, monkeypatch):
    """A lock file root left (or another user made under umask 077) in a folder its owner writes into: the batch was
    told it "cannot write into OUT", or failed with a raw PermissionError. It is named, exit 2, with what to do; in a
    folder this process may not write into, it is the OSError it was (the caller's to say, as a read-only cache's).
    A file-hash memo behind such a lock only hashes again, as behind a read-only one."""
    from mmgen.stamps import HashMemo

    path = tmp_path / ".batch-manifest.lock"
    path.write_text("")
    _refused_open(monkeypatch, path.name)
    with pytest.raises(locks.LockFileRefused) as refused:
        locks.acquire(path)
    assert (refused.value.exit_code, str(refused.value)) == (
        2, f"cannot open the lock file {path}: Permission denied (if no mmgen is running in {tmp_path}, delete it: it "
           "holds nothing)")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a folder it may not write into
    with pytest.raises(PermissionError):
        locks.acquire(path)
    monkeypatch.undo()
    file = tmp_path / "weights.bin"
    file.write_bytes(b"a" * 64)
    _refused_open(monkeypatch, ".memo.json.lock")
    assert HashMemo(tmp_path / "memo.json").sha256(file) == hashlib.sha256(b"a" * 64).hexdigest()


def _holding(tmp_path, code: str, *args) -> subprocess.Popen:
    """Another process running `code` (which ends by printing `held`) until its stdin is closed."""
    process = subprocess.Popen([sys.executable, "-c", f"import sys; from pathlib import Path; {code}; "
                                "print('held', flush=True); sys.stdin.read()", *map(str, args)],
                               env=mmgen_env(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process


def _let_go(process: subprocess.Popen) -> None:
    process.stdin.close()
    process.wait(10)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="Linux's /proc/locks names a flock's holder")
def test_a_finetune_refused_a_folder_a_batch_writes_into_names_the_batch_not_a_finetune_elsewhere(tmp_path):
    """`mmgen finetune data -o out` while `mmgen batch jobs.yaml -o out` ran was told `out is in use: another mmgen
    finetune (in another container or host) is training in it`: the batch's lock holds its folder shared, which
    keeps the run's exclusive flock out, and only an exclusive holder was named. The batch is named, with its pid."""
    from mmgen.train.run_folder import RunFolderLock

    out = tmp_path / "out"
    out.mkdir()
    batch = _holding(tmp_path, "path = Path(sys.argv[1]); sys.argv = ['mmgen', 'batch', 'jobs.yaml']; "
                     "from mmgen import locks; locks.acquire(path)", out / ".batch-running.lock")
    try:
        with pytest.raises(UsageError) as refused:
            RunFolderLock(out).take()
    finally:
        _let_go(batch)
    assert str(refused.value).startswith(f"{out} is in use: mmgen batch (pid {batch.pid}) is writing into it")
    assert refused.value.exit_code == 2
    RunFolderLock(out).check_free()  # the batch gone, it is free


def test_a_finetune_refused_by_a_batch_in_another_container_says_a_writer_not_a_training_run(tmp_path, monkeypatch):
    """A batch in another container holds the folder shared, and /proc/locks here shows none of its locks: the
    refusal said `another mmgen finetune (in another container or host) is training in it`. The kernel still tells
    a shared hold from a run's exclusive one: a writer is said, not an invented run."""
    from mmgen.train.run_folder import RunFolderLock

    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "locks").write_text("")  # what /proc/locks shows of another PID namespace's holders
    monkeypatch.setattr(lock_holders, "PROC_LOCKS", str(tmp_path / "locks"))
    batch = _holding(tmp_path, "import fcntl, os; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_SH)", out)
    try:
        with pytest.raises(UsageError) as refused:
            RunFolderLock(out).take()
    finally:
        _let_go(batch)
    assert str(refused.value).startswith(f"{out} is in use: another mmgen (in another container or host) is writing "
                                         "into it")


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_OFD_GETLK"), reason="Linux's open file locks mark a run")
def test_a_lock_in_a_folder_a_finetune_trains_in_takes_no_wait(tmp_path, monkeypatch):
    """A batch into a running finetune's folder took 35 s, not 9: each lock in it waited FOLDER_WAIT_S (2 s) for the
    folder's exclusive flock, there for an older mmgen's rename of a lock file, never a run's. A run of this mmgen
    marks its folder, and a lock there takes no wait; an exclusive flock of another (an older mmgen's) is still
    waited for."""
    run = tmp_path / "run"
    run.mkdir()
    training = _holding(tmp_path, "from mmgen.train.run_folder import RunFolderLock; "
                        "RunFolderLock(Path(sys.argv[1])).take()", run)
    try:
        began = time.monotonic()
        with locks.file_lock(run / ".x.lock") as held:
            took = time.monotonic() - began
    finally:
        _let_go(training)
    assert took < 0.5 and held.folder is None
    monkeypatch.setattr(locks, "FOLDER_WAIT_S", 0.3)
    older = _holding(tmp_path, "import fcntl, os; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX)", run)
    try:
        began = time.monotonic()
        with locks.file_lock(run / ".x.lock"):
            assert time.monotonic() - began >= 0.3
    finally:
        _let_go(older)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="a FIFO")
def test_a_lock_file_that_is_a_fifo_is_refused_at_once_naming_it_and_its_holder_is_read_without_a_wait(tmp_path):
    """`mkfifo out/.batch-running.lock`: a second batch into the folder was refused only when the first ended, naming
    no holder — reading the holder's line from a FIFO waits for a writer. Such a lock file is refused at once, one
    line naming it (as a symbolic link is), and its holder is never read."""
    path = tmp_path / ".batch-running.lock"
    os.mkfifo(path)
    with pytest.raises(UsageError, match=f"^{path} is not a regular file, where mmgen keeps a lock file") as refused:
        locks.acquire(path)
    assert refused.value.exit_code == 2
    held = os.open(path, os.O_RDWR)  # as the first batch, before, held it open
    found: list = []
    reading = threading.Thread(target=lambda: found.append(lock_holders.holder(path)))
    try:
        reading.start()
        reading.join(2)
        assert not reading.is_alive()
    finally:
        os.close(held)  # (a reader still waiting reads the end of the FIFO)
        reading.join(10)
    assert found == [None]

"""`mmgen models pull landscape` against a stand-in for the paper's Google Drive folder (tests/drive_standin.py:
the real gdown, the real local HTTP server): the first pull records what it trusted, a changed file is refused,
an interrupted pull resumes, every way Drive says no is one line and exit 2 with nothing cached, and two pulls
at once fetch once."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from drive_standin import FOLDER, QUOTA_PAGE, SIGN_IN_PAGE, DriveStandIn, drive_mmgen_command
from http_server import SOCKETS_NONE, FileServer, offline_mmgen_command
from mmgen_cli import REPO, mmgen_env
from tiny_model import TINY_FIELDS, TINY_SR_FIELDS, tiny_mmunet

from mmgen.models import build_model
from mmgen.models.config import SRUNetConfig

SHIPPED = REPO / "presets" / "models"
TIMEOUT_S = 300


def tiny_entry(tmp_path: Path, name: str = "landscape", **weights) -> None:
    """The shipped entry `name` — Drive source, sampling and all — with a tiny test architecture (and its
    parameter count), as a user entry in $MMGEN_PRESETS: a released file (134 M or 311 M parameters) would take
    minutes to convert; the code path is the same."""
    entry = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text(encoding="utf-8"))
    fields = TINY_FIELDS if entry["arch"] == "mm-unet" else TINY_SR_FIELDS
    entry["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    entry["weights"]["parameters"] = sum(t.numel() for t in tiny_state(entry["arch"]).values())
    entry["weights"].update(weights)
    folder = tmp_path / "presets" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(entry, allow_unicode=True), encoding="utf-8")


def tiny_state(arch: str, seed: int = 1) -> dict[str, torch.Tensor]:
    if arch == "mm-unet":
        return tiny_mmunet(seed).state_dict()
    torch.manual_seed(seed)
    return build_model("sr-unet", SRUNetConfig(**TINY_SR_FIELDS)).state_dict()


def checkpoint(state: dict[str, torch.Tensor]) -> bytes:
    """What the official release is: torch.save of a plain state dict."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def tiny_checkpoint(seed: int = 1, arch: str = "mm-unet") -> bytes:
    return checkpoint(tiny_state(arch, seed))


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


def mmgen(server: FileServer, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`mmgen ARGS` with the stand-in Drive and the test's own cache and presets."""
    return subprocess.run(
        drive_mmgen_command(server, *args),
        env=mmgen_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture
def in_process(server, tmp_path, monkeypatch):
    """`mmgen ARGS` inside this process (tests/cli_here.py) with the stand-in Drive: for the steps of a story
    whose subject is not the process (a listing, info, rm, a repeat pull); the real command runs where a test's
    promise is its exit code and stderr."""
    import requests
    from cli_here import run_here
    from drive_standin import redirect

    monkeypatch.setattr(requests.Session, "request", requests.Session.request)  # undone after the test
    redirect(server.base_url)
    return lambda *args, **env: run_here(*args, env=mmgen_env(tmp_path, **env))


def cached(tmp_path: Path, name: str = "landscape") -> list[str]:
    """Everything under the cache for `name` but its lock: model files, partial downloads, trust record."""
    root = tmp_path / "cache"
    found = [p for p in (root / "models" / name).glob("*") if p.name != ".lock"]
    found += [p for p in (root / "trust").glob(f"{name}.json")]
    return sorted(p.name for p in found)


def info(in_process, name: str = "landscape") -> dict:
    result = in_process("models", "info", name, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_first_pull_records_what_it_trusted_and_a_changed_file_is_refused(tmp_path, server, in_process):
    tiny_entry(tmp_path)
    drive = DriveStandIn(server)
    first_bytes = tiny_checkpoint(seed=1)
    drive.put("Landscape.pt", first_bytes)
    sha256 = hashlib.sha256(first_bytes).hexdigest()

    listed = in_process("models", "list", "--json")
    row = {r["name"]: r for r in map(json.loads, listed.stdout.splitlines())}["landscape"]
    assert (row["status"], row["sha256"]) == ("downloadable", None)
    assert row["fetch"] == "Landscape.pt from https://drive.google.com/drive/folders/1Mno4A3BUXELAdX4m650CJ1VfuMVlkz5p"

    first = mmgen(server, tmp_path, "models", "pull", "landscape")

    assert first.returncode == 0, first.stderr
    assert "landscape: downloaded to" in first.stderr
    assert cached(tmp_path) == ["landscape.json", "model.json", "model.safetensors"]  # no partial file left
    trusted = info(in_process)["trusted_on_first_use"]
    assert (trusted["file"], trusted["sha256"], trusted["size"]) == ("Landscape.pt", sha256, len(first_bytes))
    listed = in_process("models", "list", "--json")
    row = {r["name"]: r for r in map(json.loads, listed.stdout.splitlines())}["landscape"]
    # Named by the weights file mmgen loads, and by the .pt it came from (what was trusted), labelled source.
    weights = tmp_path / "cache" / "models" / "landscape" / "model.safetensors"
    assert (row["status"], row["source_sha256"], row["fetch"]) == ("cached", sha256, None)
    assert row["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()

    # The sidecar of a clip made with it names the file first pulled.
    out = tmp_path / "out"
    generated = in_process("generate", "-m", "landscape", "--sampler", "ddim", "--steps", "1", "--no-upscale",
                     "--no-previews", "-o", out, "--json")
    assert generated.returncode == 0, generated.stderr
    assert json.loads(generated.stdout)["model_source_sha256"] == sha256

    # The authors' file changes (or someone serves another one): after `rm`, a pull of it is refused.
    assert in_process("models", "rm", "landscape").returncode == 0
    drive.put("Landscape.pt", tiny_checkpoint(seed=2))
    refused = mmgen(server, tmp_path, "models", "pull", "landscape")

    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("mmgen: error: landscape: the Landscape.pt Google Drive serves now is not the file "
                           "first seen on ") and f"(sha256 {sha256}, {len(first_bytes)} bytes)" in last
    assert "mmgen models rm landscape --forget" in last and "Traceback" not in refused.stderr
    assert cached(tmp_path) == ["landscape.json"]  # only the record of the first file

    # Told to forget it, the next pull trusts the new file.
    assert in_process("models", "rm", "landscape", "--forget").returncode == 0
    again = in_process("models", "pull", "landscape", "-q")
    assert again.returncode == 0, again.stderr
    assert info(in_process)["trusted_on_first_use"]["sha256"] != sha256


def test_an_interrupted_pull_resumes_where_it_stopped(tmp_path, server, in_process):
    tiny_entry(tmp_path)
    drive = DriveStandIn(server)
    data = tiny_checkpoint()
    drop = len(data) // 2
    drive.put("Landscape.pt", data, drop_at=drop)

    first = mmgen(server, tmp_path, "models", "pull", "landscape", MMGEN_DOWNLOAD_RETRIES="0")

    assert first.returncode == 1, first.stderr
    assert "resuming" not in first.stderr  # a fresh pull's first line said so (of its first chunk)
    assert "run the same command again to resume" in first.stderr.strip().splitlines()[-1]
    [part] = [n for n in cached(tmp_path) if n.endswith(".part")]  # gdown's temporary, kept for the resume
    kept = (tmp_path / "cache" / "models" / "landscape" / part).stat().st_size
    assert 0 < kept <= drop

    second = in_process("models", "pull", "landscape", MMGEN_DOWNLOAD_RETRIES="0")

    assert second.returncode == 0, second.stderr
    assert ", resuming" in second.stderr.splitlines()[0], second.stderr
    assert f"bytes={kept}-" in [r.range for r in drive.downloads("Landscape.pt")]  # asked only for the rest
    assert cached(tmp_path) == ["landscape.json", "model.json", "model.safetensors"]
    trusted = info(in_process)["trusted_on_first_use"]
    assert (trusted["sha256"], trusted["size"]) == (hashlib.sha256(data).hexdigest(), len(data))


def test_a_drive_file_whose_size_nobody_states_is_cut_off_before_it_can_fill_the_disk(tmp_path, server, in_process,
                                                                                        monkeypatch):
    """Drive (gdown) sending a file without a Content-Length and without end: stopped at MAX_UNSIZED (16 GB; here
    twice the file), exit 2 naming the file and folder and how to get it by hand (freeing space, the hint it had,
    lets mmgen take no more of it), gdown's temporary deleted. In process, for speed."""
    from mmgen.terminal import size_text

    tiny_entry(tmp_path)
    data = tiny_checkpoint()
    DriveStandIn(server).put("Landscape.pt", data, length=None, trailing=2**30)
    monkeypatch.setattr("mmgen.weights.download.MAX_UNSIZED", 2 * len(data))

    result = in_process("models", "pull", "landscape", "-q")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"mmgen: error: landscape: Landscape.pt from https://drive.google.com/drive/folders/{FOLDER} "
                           f"sent more than {size_text(2 * len(data))} without stating its size"), line
    assert line.endswith("; deleted the download (download Landscape.pt from https://drive.google.com/drive/folders/"
                         f"{FOLDER} in a browser, then run `mmgen models import Landscape.pt --name landscape`)"), line
    assert cached(tmp_path) == []


def test_a_drive_file_whose_size_nobody_states_stops_where_the_disk_would_keep_too_little_free(tmp_path, server,
                                                                                                in_process, monkeypatch):
    """Drive (gdown) sending the file without a Content-Length onto a disk with room for half of it (past the 1 GB
    download.FREE_MARGIN): stopped there, exit 2, one line naming the file, the folder and the free space it keeps,
    gdown's temporary deleted (with no size stated, its bytes may be an endless stream's). In process, for speed; the
    free space is faked."""
    import shutil

    from mmgen.terminal import size_text
    from mmgen.weights.download import FREE_MARGIN

    tiny_entry(tmp_path)
    data = tiny_checkpoint()
    DriveStandIn(server).put("Landscape.pt", data, length=None)
    real = shutil.disk_usage
    monkeypatch.setattr("shutil.disk_usage", lambda path: real(path)._replace(free=FREE_MARGIN + len(data) // 2))

    result = in_process("models", "pull", "landscape", "-q")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    folder = tmp_path / "cache" / "models" / "landscape"
    assert line.startswith(f"mmgen: error: landscape: Landscape.pt from https://drive.google.com/drive/folders/{FOLDER} "
                           f"sent more than {size_text(len(data) // 2)} without stating its size: more would leave "
                           f"less than {size_text(FREE_MARGIN)} free in {folder}; deleted the download "
                           f"(free some space in {folder}, then run the same command again)"), line
    assert cached(tmp_path) == []


def test_a_first_drive_pull_sizes_its_cap_and_its_space_check_by_the_size_drive_states(tmp_path, server, in_process,
                                                                                        monkeypatch):
    """A first `models pull landscape` on a small disk (the cache on a 1.3 GB tmpfs) was refused 363 MB in "sent
    more than 363.1 MB without stating its size", its download deleted, though Drive stated the size and the file
    fitted: its cap was made before the response came. The stated size is the cap now: a file that fits comes
    (here with less than the 1 GB margin an unsized file keeps free); one that does not is refused at once, its
    start kept, and the pull resumes once there is room. In process, for speed; the free space is faked."""
    import shutil

    tiny_entry(tmp_path)
    data = tiny_checkpoint()
    drive = DriveStandIn(server)
    drive.put("Landscape.pt", data)
    real = shutil.disk_usage

    def free(bytes_free: int) -> None:
        monkeypatch.setattr("shutil.disk_usage", lambda path: real(path)._replace(free=bytes_free))

    free(len(data) // 2)  # the file does not fit
    refused = in_process("models", "pull", "landscape", "-q")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"mmgen: error: not enough disk space in {tmp_path / 'cache'}"), line
    assert "then run the same command again to resume where it stopped" in line, line
    [part] = [n for n in cached(tmp_path) if n.endswith(".part")]  # gdown's temporary, kept for the resume
    kept = (tmp_path / "cache" / "models" / "landscape" / part).stat().st_size
    assert 0 < kept < len(data)

    free(10**9 - 1)  # room for the file, but under the margin an unsized file keeps (download.FREE_MARGIN)
    pulled = in_process("models", "pull", "landscape", "-q")
    assert pulled.returncode == 0, pulled.stderr
    assert f"bytes={kept}-" in [r.range for r in drive.downloads("Landscape.pt")]  # asked only for the rest
    assert cached(tmp_path) == ["landscape.json", "model.json", "model.safetensors"]


def released_sr_checkpoint() -> bytes:
    """The released SR upsampler's exact key list at its released shapes (311 M parameters) in a few bytes:
    every tensor a zero-stride view of one element."""
    one = torch.zeros(1)
    shapes = {k: v.shape for k, v in build_model("sr-unet", SRUNetConfig(), device="meta").state_dict().items()}
    return checkpoint({k: one.expand(shape) for k, shape in shapes.items()})


FAILURES = {
    "quota": (
        lambda drive: drive.put("Landscape.pt", tiny_checkpoint(), page=QUOTA_PAGE),
        "mmgen: error: landscape: Google Drive refuses Landscape.pt for now: too many users have viewed or "
        "downloaded this file recently; nothing was cached (retry later",
    ),
    "web page": (
        lambda drive: drive.put("Landscape.pt", tiny_checkpoint(), page=SIGN_IN_PAGE),
        "mmgen: error: landscape: Google Drive sent a web page instead of Landscape.pt; nothing was cached",
    ),
    "web page as the file": (
        lambda drive: drive.put("Landscape.pt", SIGN_IN_PAGE.encode()),
        "mmgen: error: landscape: Google Drive sent a web page instead of Landscape.pt; nothing was cached",
    ),
    "missing file": (
        lambda drive: drive.put("Landscape_v2.pt", tiny_checkpoint()),
        "mmgen: error: landscape: the Google Drive folder https://drive.google.com/drive/folders/"
        "1Mno4A3BUXELAdX4m650CJ1VfuMVlkz5p has no file Landscape.pt (it holds Landscape_v2.pt)",
    ),
    "wrong architecture": (  # the shipped, released-size entry, served the upsampler's file
        lambda drive: drive.put("Landscape.pt", released_sr_checkpoint()),
        "landscape (Landscape.pt from Google Drive) does not fit the architecture: ",
    ),
    "wrong parameter count": (
        lambda drive: drive.put("Landscape.pt", tiny_checkpoint()),
        "parameters, not the 133,675,524 of the released 'landscape'",
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_every_way_drive_says_no_is_one_line_exit_2_and_nothing_cached(tmp_path, server, failure):
    serve, message = FAILURES[failure]
    if failure == "wrong parameter count":
        tiny_entry(tmp_path, parameters=133_675_524)
    elif failure != "wrong architecture":
        tiny_entry(tmp_path)
    serve(DriveStandIn(server))

    result = mmgen(server, tmp_path, "models", "pull", "landscape", "-q")

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()  # one line, no traceback, nothing from gdown
    assert message in line
    assert cached(tmp_path) == []  # no model, no partial download, no trust record


def test_offline_pull_opens_no_socket_and_says_how_to_get_the_file(tmp_path):
    env = mmgen_env(tmp_path, MMGEN_OFFLINE="1")

    result = subprocess.run(offline_mmgen_command("models", "pull", "aist++"), env=env, capture_output=True,
                            text=True, timeout=TIMEOUT_S)

    assert result.returncode == 2
    error, sockets = result.stderr.strip().splitlines()
    assert sockets == SOCKETS_NONE
    assert error == (
        "mmgen: error: aist++: weights are not in the cache and MMGEN_OFFLINE=1 forbids downloading (on a "
        "connected machine, download AIST++.pt from https://drive.google.com/drive/folders/"
        "1Mno4A3BUXELAdX4m650CJ1VfuMVlkz5p in a browser, then run `mmgen models import AIST++.pt --name aist++`)"
    )
    assert cached(tmp_path, "aist++") == []


def test_two_pulls_at_once_fetch_once(tmp_path, server):
    tiny_entry(tmp_path)
    drive = DriveStandIn(server)
    drive.put("Landscape.pt", tiny_checkpoint(), delay=0.02)  # long enough for the second to start meanwhile
    env = mmgen_env(tmp_path)

    runs = [
        subprocess.Popen(drive_mmgen_command(server, "models", "pull", "landscape", "--json"), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=TIMEOUT_S), *p.communicate()) for p in runs]

    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    assert sorted(json.loads(out)["fetched"] for _, out, _ in results) == [False, True]
    assert len(drive.downloads("Landscape.pt")) == 1 and drive.listings() == 1
    assert cached(tmp_path) == ["landscape.json", "model.json", "model.safetensors"]


OFFICIAL = {"aist++": "AIST++.pt", "aist++-sr": "AIST++_SR.pt", "landscape": "Landscape.pt",
            "landscape-sr": "Landscape_SR.pt"}


def test_pull_all_official_fetches_the_four_and_doctor_shows_them(tmp_path, server, in_process):
    drive = DriveStandIn(server)
    for name, file in OFFICIAL.items():
        tiny_entry(tmp_path, name)
        drive.put(file, tiny_checkpoint(arch="sr-unet" if name.endswith("-sr") else "mm-unet"))
    before = {m["name"]: m for m in json.loads(in_process("doctor", "--json").stdout)["models"]}

    result = mmgen(server, tmp_path, "models", "pull", "--all-official", "--json")

    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["name"] for line in result.stdout.splitlines()] == list(OFFICIAL)
    after = {m["name"]: m for m in json.loads(in_process("doctor", "--json").stdout)["models"]}
    for name, file in OFFICIAL.items():
        assert (before[name]["status"], before[name]["sha256"]) == ("downloadable", None)
        assert before[name]["fetch"] == f"{file} from https://drive.google.com/drive/folders/{FOLDER}"
        assert (after[name]["status"], after[name]["fetch"]) == ("cached", None)
        assert after[name]["source_sha256"] == info(in_process, name)["trusted_on_first_use"]["sha256"]
        weights = tmp_path / "cache" / "models" / name / "model.safetensors"
        assert after[name]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert in_process("models", "pull").returncode == 2  # a name or --all-official is required


def test_a_cached_model_damaged_on_disk_is_refused_and_pull_fetches_it_again(tmp_path, server, in_process):
    tiny_entry(tmp_path)
    DriveStandIn(server).put("Landscape.pt", tiny_checkpoint())
    assert in_process("models", "pull", "landscape", "-q").returncode == 0
    weights = tmp_path / "cache" / "models" / "landscape" / "model.safetensors"
    record = json.loads(weights.with_name("model.json").read_text())
    recorded = record["sha256"]
    damaged = bytearray(weights.read_bytes())
    damaged[-100] ^= 0xFF  # one flipped bit of a weight: same size, new mtime
    weights.write_bytes(damaged)

    refused = mmgen(server, tmp_path, "generate", "-m", "landscape", "--steps", "1", "--no-upscale",
                    "-o", tmp_path / "out")

    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"mmgen: error: landscape: the cached weights file {weights} has changed on disk")
    assert f"recorded sha256 {recorded}" in line
    assert "run `mmgen models verify` to check every model, then `mmgen models pull landscape`" in line
    assert not (tmp_path / "out").exists()

    repaired = in_process("models", "pull", "landscape", "--json")

    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["fetched"] is True
    again = json.loads(weights.with_name("model.json").read_text())
    assert again["source_sha256"] == record["source_sha256"]  # the same Landscape.pt, converted afresh
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == again["sha256"]
    assert in_process("models", "verify", "landscape").returncode == 0


@pytest.mark.parametrize("when", ["weights landed", "all kept"])
def test_a_stop_as_pulled_weights_land_keeps_the_download_or_the_model_and_says_which(tmp_path, server, in_process,
                                                                                     monkeypatch, when):
    """SIGTERM right after model.safetensors appeared left it beside the .part, with no record, while the line said
    "kept the partial download … resumes it". Now a stop before the model is all in place keeps the download alone
    (the next pull resumes it, no byte fetched again); one after it keeps the model, and says so."""
    import os
    import signal

    from mmgen import files

    tiny_entry(tmp_path)
    drive = DriveStandIn(server)
    drive.put("Landscape.pt", tiny_checkpoint())
    commit, forget = files._commit, files._Commit.forget

    def commit_then_stop(temp, target, replace):
        commit(temp, target, replace)
        if target.name == "model.safetensors":
            os.kill(os.getpid(), signal.SIGTERM)

    def forget_then_stop(undo):
        forget(undo)
        if undo.target.suffix == ".part":
            os.kill(os.getpid(), signal.SIGTERM)

    if when == "weights landed":
        monkeypatch.setattr(files, "_commit", commit_then_stop)
    else:
        monkeypatch.setattr(files._Commit, "forget", forget_then_stop)
    stopped = in_process("models", "pull", "landscape")

    assert stopped.returncode == 143, stopped.stderr
    last = stopped.stderr.splitlines()[-1]
    folder = tmp_path / "cache" / "models" / "landscape"
    if when == "all kept":
        assert last == f"mmgen: interrupted (SIGTERM); landscape was downloaded to {folder / 'model.safetensors'}"
        assert cached(tmp_path) == ["landscape.json", "model.json", "model.safetensors"]
        return
    assert last.startswith("mmgen: interrupted (SIGTERM); kept the partial download of landscape")
    [part] = cached(tmp_path)
    assert part.endswith(".part") and not any(p.name.startswith(".") for p in folder.iterdir() if p.name != ".lock")
    monkeypatch.setattr(files, "_commit", commit)
    again = in_process("models", "pull", "landscape")
    assert again.returncode == 0, again.stderr
    assert cached(tmp_path) == ["landscape.json", "model.json", "model.safetensors"]
    assert len(drive.downloads("Landscape.pt")) == 1  # the kept file was the whole of it: not fetched again


def test_a_stop_while_waiting_for_another_pull_claims_none_of_its_download(tmp_path, server, in_process, monkeypatch):
    """Ctrl-C on a pull that only waited for another's lock said "kept the partial download of landscape (1.8 MB) in
    …part: `mmgen models pull landscape` resumes it": that .part was the other process's."""
    import os
    import signal

    from mmgen import locks

    tiny_entry(tmp_path)
    folder = tmp_path / "cache" / "models" / "landscape"
    folder.mkdir(parents=True)
    (folder / "0123.part").write_bytes(b"x" * 1000)  # what the other process has downloaded so far

    def held_by_another(fd, slot, wait):
        if not wait:
            return False
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while it waits
        raise AssertionError("the stop signal never came")

    monkeypatch.setattr(locks, "_lock_descriptor", held_by_another)
    stopped = in_process("models", "pull", "landscape")

    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == ("mmgen: interrupted; it was still waiting for another mmgen process "
                                               "pulling landscape: nothing downloaded by this one")
    assert (folder / "0123.part").stat().st_size == 1000


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """`mmgen ARGS` in this process where every connection is refused: the proxies point at a closed port."""
    from cli_here import run_here

    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    port = _closed_port()
    proxy = f"http://127.0.0.1:{port}"
    env = mmgen_env(tmp_path, http_proxy=proxy, https_proxy=proxy, MMGEN_DOWNLOAD_RETRIES="0")
    return port, lambda *args: run_here(*args, env=env)


def test_no_connection_to_drive_says_which_host_and_how_to_get_the_file_by_hand(tmp_path, no_network):
    """It said `download … failed (HTTPSConnectionPool(…) Caused by ProxyError(…NewConnectionError(…)))` and `run the
    same command again to resume where it stopped`, with nothing to resume."""
    port, mmgen_here = no_network
    tiny_entry(tmp_path)
    done = mmgen_here("models", "pull", "landscape", "-q")
    assert done.returncode == 1
    assert done.stderr == (
        f"mmgen: error: landscape: cannot reach 127.0.0.1:{port} (the proxy): connection refused (check the network "
        "connection or proxy, or download Landscape.pt from https://drive.google.com/drive/folders/"
        "1Mno4A3BUXELAdX4m650CJ1VfuMVlkz5p in a browser, then run `mmgen models import Landscape.pt --name landscape`)\n")
    assert cached(tmp_path) == []


def test_no_connection_to_a_url_says_which_host_and_how_to_get_the_file_by_hand(tmp_path, no_network):
    port, mmgen_here = no_network
    folder = tmp_path / "presets" / "models"
    folder.mkdir(parents=True)
    url = f"http://127.0.0.1:{_closed_port()}/mine.safetensors"
    (folder / "mine.yaml").write_text(f"base: demo\nweights:\n  urls: [{url}]\n  sha256: {'a' * 64}\n")
    done = mmgen_here("models", "pull", "mine", "-q")
    assert done.returncode == 1
    assert done.stderr == (
        f"mmgen: error: mine: download failed: {url} (gave up after 1 try: cannot reach 127.0.0.1:{port} (the "
        f"proxy): connection refused) (check the network connection, or fetch {url} on a connected machine, then "
        "run `mmgen models import FILE --name mine`)\n")

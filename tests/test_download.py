"""Pulling weights from a real local HTTP server: resume after a dropped connection, checksum failures,
404s, retried 500s, two concurrent pulls, and offline mode — each through the `mmgen` command: in the test's
process (tests/cli_here.py) where what it does and says is the point, in processes of its own for two pulls at
once, a Ctrl-C, and offline mode (no socket opened in the whole process)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import signal
import subprocess
import time
from dataclasses import fields
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from cli_here import run_here
from conftest import OFFICIAL, official_json
from http_server import SOCKETS_NONE, FileServer, offline_mmgen_command
from mmgen_cli import mmgen_command, mmgen_env
from tiny_model import save_tiny_model, tiny_config

from mmgen.cli import run
from mmgen.errors import ConfigError
from mmgen.models.config import SRUNetConfig
from mmgen.weights import load_model, load_registry
from mmgen.weights.catalog import verify_models
from mmgen.weights.download import RetryPolicy
from mmgen.weights.urls import check_url

NAME = "tiny-sr"


def tiny_sr_fields() -> dict:
    """The tiny official SR fixture's constructor kwargs that are SRUNetConfig fields (the rest are fixed)."""
    kwargs = official_json("tiny_sr.json")["constructor_kwargs"]
    return {f.name: kwargs[f.name] for f in fields(SRUNetConfig) if f.name in kwargs}


@pytest.fixture(scope="module")
def official_pt() -> bytes:
    """An official-format checkpoint: torch.save of a plain state dict."""
    buffer = io.BytesIO()
    torch.save(safetensors.torch.load_file(OFFICIAL / "tiny_sr.safetensors"), buffer)
    return buffer.getvalue()


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


def register(tmp_path: Path, urls: list[str], data: bytes, name: str = NAME, **weights) -> None:
    """A user registry entry (in $MMGEN_PRESETS) for the tiny SR model at `urls` (`weights`: more of its fields)."""
    entry = {
        "arch": "sr-unet",
        "config": tiny_sr_fields(),
        "weights": {"urls": urls, "sha256": hashlib.sha256(data).hexdigest(), "format": "pt", **weights},
    }
    folder = tmp_path / "presets" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(entry))


def use_env(monkeypatch, tmp_path: Path, **extra: str) -> None:
    """This process sees the isolated cache/presets a subprocess would (for in-process `mmgen.cli.run`)."""
    for key, value in mmgen_env(tmp_path, **extra).items():
        monkeypatch.setenv(key, value)


def cache_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache"
    return (
        sorted(p.name for p in root.rglob("*") if p.is_file() and p.name != ".lock") if root.exists() else []
    )


def test_dropped_connection_resumes_with_range_on_the_next_pull(tmp_path, server, official_pt, monkeypatch):
    drop = random.Random(7).randrange(100_000, len(official_pt) - 1000)
    register(tmp_path, [server.add("/tiny.pt", official_pt, drop_at=drop)], official_pt)
    env = mmgen_env(tmp_path, MMGEN_DOWNLOAD_RETRIES="0")

    first = run_here("models", "pull", NAME, env=env)
    assert first.returncode == 1, first.stderr
    assert "run the same command again to resume" in first.stderr
    part = next((tmp_path / "cache").rglob("*.part"))
    assert part.name == f"{hashlib.sha256(official_pt).hexdigest()}.part"
    kept = part.stat().st_size  # what arrived before the drop, less at most the chunk in flight
    assert 0 < kept <= drop and part.read_bytes() == official_pt[:kept]

    use_env(monkeypatch, tmp_path, MMGEN_DOWNLOAD_RETRIES="0")  # the next pull in this process, for speed
    assert run(["models", "pull", NAME]) == 0
    assert [(r.range, r.status) for r in server.requests] == [(None, 200), (f"bytes={kept}-", 206)]
    assert cache_files(tmp_path) == ["model.json", "model.safetensors"]
    assert [v.verdict for v in verify_models(NAME)] == ["ok"]


def test_a_drop_within_one_pull_is_retried_from_where_it_stopped(tmp_path, server, official_pt, monkeypatch):
    register(tmp_path, [server.add("/tiny.pt", official_pt, drop_at=len(official_pt) // 3)], official_pt)
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)

    loaded = load_model(NAME, quiet=True)  # the library API downloads on demand too

    assert [r.range for r in server.requests][0] is None
    assert 0 < int(server.requests[1].range.removeprefix("bytes=").removesuffix("-")) <= len(official_pt) // 3
    reference = safetensors.torch.load_file(OFFICIAL / "tiny_sr.safetensors")
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in reference.items())
    assert loaded.config == SRUNetConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in tiny_sr_fields().items()}
    )


def test_one_corrupted_byte_fails_the_checksum_and_leaves_nothing(tmp_path, server, official_pt):
    register(tmp_path, [server.add("/tiny.pt", official_pt, corrupt_at=12345)], official_pt)
    corrupted = bytearray(official_pt)
    corrupted[12345] ^= 0xFF

    result = run_here("models", "pull", NAME, env=mmgen_env(tmp_path))

    assert result.returncode == 2, result.stderr
    assert hashlib.sha256(official_pt).hexdigest() in result.stderr  # expected
    assert hashlib.sha256(corrupted).hexdigest() in result.stderr  # actual
    assert cache_files(tmp_path) == []  # no cache entry, no .part


def test_a_server_that_never_stops_sending_is_cut_off_at_the_registered_size(tmp_path, server, official_pt,
                                                                             monkeypatch, capsys):
    """No Content-Length and zeros without end (1 GB here): the download stops past the entry's `size`, not at a
    full disk.
    What arrived is garbage and deleted; a later pull starts afresh (from the next URL here)."""
    size = len(official_pt)
    endless = server.add("/endless.pt", bytes(size // 2), length=None, trailing=2**30)
    register(tmp_path, [endless, server.add("/tiny.pt", official_pt)], official_pt, size=size)
    server.files["/tiny.pt"].fail_status, server.files["/tiny.pt"].fail_times = 404, 1
    use_env(monkeypatch, tmp_path)

    assert run(["models", "pull", NAME]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("mmgen: error: ") and f"{endless}: sent more than the {size} bytes the file has" in err
    assert cache_files(tmp_path) == []

    assert run(["models", "pull", NAME]) == 0  # the mirror that serves the file
    assert cache_files(tmp_path) == ["model.json", "model.safetensors"]


def test_a_file_whose_size_nobody_states_is_cut_off_before_it_can_fill_the_disk(tmp_path, server, official_pt,
                                                                                  monkeypatch, capsys):
    """No `size:` in the entry and no Content-Length: the download stops at MAX_UNSIZED (16 GB; 2 MB here), or
    sooner where the cache's disk would keep less than 1 GB free — exit 2 naming the URL, nothing left behind. A
    file of unknown size under the cap comes as any other."""
    endless = server.add("/endless.pt", official_pt, length=None, trailing=2**30)
    register(tmp_path, [endless], official_pt)
    use_env(monkeypatch, tmp_path)
    monkeypatch.setattr("mmgen.weights.download.MAX_UNSIZED", 2 * 10**6)

    assert run(["models", "pull", NAME]) == 2
    [err] = capsys.readouterr().err.splitlines()[-1:]
    assert err.startswith(f"mmgen: error: {NAME}: {endless}: sent more than 2.0 MB without stating its size, the "
                          "most mmgen takes of a file of unknown size; nothing was kept"), err
    assert cache_files(tmp_path) == []

    real = shutil.disk_usage
    monkeypatch.setattr("shutil.disk_usage", lambda path: real(path)._replace(free=10**9 + 500_000))
    assert run(["models", "pull", NAME]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert f"{endless}: sent more than 500.0 kB without stating its size: more would leave less than 1.0 GB free " \
           f"in {tmp_path / 'cache'}" in err, err
    assert cache_files(tmp_path) == []

    monkeypatch.undo()
    use_env(monkeypatch, tmp_path)
    monkeypatch.setattr("mmgen.weights.download.MAX_UNSIZED", 2 * 10**6)
    register(tmp_path, [server.add("/unsized.pt", official_pt, length=None)], official_pt)
    assert run(["models", "pull", NAME]) == 0
    assert cache_files(tmp_path) == ["model.json", "model.safetensors"]


def test_a_content_length_the_registry_contradicts_does_not_stop_the_download(tmp_path, server, official_pt,
                                                                              monkeypatch, capsys):
    """A header claiming 10 TB: the entry's `size` is believed (the file comes, read no further than that);
    without one, the disk-space check believes the header and refuses, exit 2."""
    url = server.add("/tiny.pt", official_pt, length=10**13)
    register(tmp_path, [url], official_pt, size=len(official_pt))
    use_env(monkeypatch, tmp_path)
    assert run(["models", "pull", NAME]) == 0, capsys.readouterr().err
    assert cache_files(tmp_path) == ["model.json", "model.safetensors"]

    register(tmp_path, [url], official_pt, name="tiny-sr-unsized")
    assert run(["models", "pull", "tiny-sr-unsized"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("mmgen: error: not enough disk space in ") and "need 10.0 TB, " in err


def test_a_mirror_given_with_url_is_checked_against_the_registered_sha256(tmp_path, server, official_pt, monkeypatch,
                                                                          capsys):
    """`models pull NAME --url MIRROR` of an entry with a sha256 needs no --sha256: the registry's applies."""
    register(tmp_path, [server.base_url + "/gone/tiny.pt"], official_pt)
    altered = bytearray(official_pt)
    altered[1000] ^= 0xFF
    use_env(monkeypatch, tmp_path)

    assert run(["models", "pull", NAME, "--url", server.add("/bad-mirror/tiny.pt", bytes(altered))]) == 2
    assert hashlib.sha256(official_pt).hexdigest() in capsys.readouterr().err  # what it must be
    assert run(["models", "pull", NAME, "--url", server.add("/mirror/tiny.pt", official_pt)]) == 0
    assert cache_files(tmp_path) == ["model.json", "model.safetensors"]


def test_a_whole_download_that_is_refused_is_deleted_and_named_by_its_url(tmp_path, server, official_pt):
    """A mirror's file that arrives whole (its sha256 matches) but is no checkpoint: exit 2 naming the model and the
    URL, not the `.part`, which is deleted — it was complete, so the next pull fetches from the start, not resumes."""
    register(tmp_path, [server.base_url + "/gone/tiny.pt"], official_pt)
    junk = b"not a checkpoint at all" * 40
    url = server.add("/short.pt", junk)
    pull = ("models", "pull", NAME, "--url", url, "--sha256", hashlib.sha256(junk).hexdigest(), "--quiet")

    for _ in range(2):
        refused = run_here(*pull, env=mmgen_env(tmp_path))
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(f"mmgen: error: {NAME} ({url}): damaged, or not a PyTorch checkpoint (")
        assert ".part" not in refused.stderr
        assert cache_files(tmp_path) == []
    assert [r.range for r in server.requests] == [None, None]


def test_404_exits_2_naming_the_url(tmp_path, server, official_pt):
    url = server.base_url + "/nowhere/tiny.pt"
    register(tmp_path, [url], official_pt)

    result = run_here("models", "pull", NAME, env=mmgen_env(tmp_path))

    assert result.returncode == 2
    assert url in result.stderr and "404" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_a_redirect_within_the_allowed_urls_is_followed(tmp_path, server, official_pt, monkeypatch):
    from mmgen.cli import run

    server.add("/files/tiny.pt", official_pt)
    register(tmp_path, [server.add("/latest", b"", redirect_to="/files/tiny.pt")], official_pt)
    use_env(monkeypatch, tmp_path)

    assert run(["models", "pull", NAME, "--quiet"]) == 0
    assert [(r.path, r.status) for r in server.requests] == [("/latest", 302), ("/files/tiny.pt", 200)]
    assert cache_files(tmp_path) == ["model.json", "model.safetensors"]


@pytest.mark.parametrize(
    "target, refusal",
    [
        ("http://127.0.0.2:9/tiny.pt", "redirected to an unsupported url 'http://127.0.0.2:9/tiny.pt'"),
        ("file:///etc/passwd", "redirected to a local file 'file:///etc/passwd'"),
    ],
)
def test_a_redirect_to_plain_http_or_a_local_file_is_refused(
    tmp_path, server, official_pt, target, refusal, monkeypatch, capsys
):
    from mmgen.cli import run

    register(tmp_path, [server.add("/elsewhere", b"", redirect_to=target)], official_pt)
    use_env(monkeypatch, tmp_path)

    assert run(["models", "pull", NAME, "--quiet"]) == 2
    assert refusal in capsys.readouterr().err
    assert server.count("/elsewhere") == 1 and cache_files(tmp_path) == []


def test_server_errors_are_retried_until_the_file_comes(tmp_path, server, official_pt):
    register(tmp_path, [server.add("/tiny.pt", official_pt, fail_status=500, fail_times=2)], official_pt)

    result = run_here("models", "pull", NAME, env=mmgen_env(tmp_path))

    assert result.returncode == 0, result.stderr
    assert [r.status for r in server.requests] == [500, 500, 200]
    assert "retry 2/4" in result.stderr


def test_two_concurrent_pulls_download_once(tmp_path, server, official_pt):
    # ~2 s of transfer, so the second process arrives while the first still holds the lock.
    register(tmp_path, [server.add("/tiny.pt", official_pt, delay=0.1)], official_pt)
    env = mmgen_env(tmp_path)

    procs = [
        subprocess.Popen(mmgen_command("models", "pull", NAME), env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]

    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert server.count("/tiny.pt") == 1
    assert any("waiting for another mmgen process" in err for _, err in outcomes)
    assert cache_files(tmp_path) == ["model.json", "model.safetensors"]


def test_offline_mode_never_opens_a_socket(tmp_path, server, official_pt):
    url = server.add("/tiny.pt", official_pt)
    register(tmp_path, [url], official_pt)
    env = mmgen_env(tmp_path, MMGEN_OFFLINE="1")

    result = subprocess.run(
        offline_mmgen_command("models", "pull", NAME), env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 2, result.stderr
    assert f"mmgen models import FILE --name {NAME}" in result.stderr and url in result.stderr
    assert server.requests == []  # the server saw nothing ...
    assert result.stderr.splitlines()[-1] == SOCKETS_NONE  # ... because no socket was even created


def test_a_user_hosted_fine_tune_is_three_lines_of_yaml(tmp_path, server, monkeypatch):
    fine_tune = save_tiny_model(tmp_path / "my-fine-tune.safetensors").read_bytes()
    url = server.add("/my-fine-tune.safetensors", fine_tune)
    folder = tmp_path / "presets" / "models"
    folder.mkdir(parents=True)
    (folder / "mine.yaml").write_text(
        f"base: demo\nweights: {{urls: [{url}], sha256: {hashlib.sha256(fine_tune).hexdigest()}}}\n"
    )

    use_env(monkeypatch, tmp_path)

    assert run(["models", "pull", "mine", "--quiet"]) == 0
    loaded = load_model("mine")  # the architecture comes from the file's own metadata
    assert (loaded.arch, loaded.config, loaded.entry.sampling) == (
        "mm-unet",
        tiny_config(),
        load_registry().get("demo").sampling,
    )


def test_file_urls_work_offline_and_a_tampered_cache_fails_verify(tmp_path, official_pt, monkeypatch, capsys):
    from mmgen.cli import run

    source = tmp_path / "mirror" / "tiny.pt"
    source.parent.mkdir()
    source.write_bytes(official_pt)
    register(tmp_path, [source.as_uri()], official_pt)
    for key, value in mmgen_env(tmp_path, MMGEN_OFFLINE="1").items():
        monkeypatch.setenv(key, value)

    assert run(["models", "pull", NAME, "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert pulled["fetched"] and Path(pulled["path"]).is_file()
    assert pulled["kind"] == "model"  # as `models list` and `verify` name it
    assert run(["models", "pull", NAME]) == 0
    assert "already available" in capsys.readouterr().err

    weights = Path(pulled["path"])
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert run(["models", "verify", "--json"]) == 2  # every model: the tampered one and the bundled demo
    verdicts = {v["name"]: v for v in map(json.loads, capsys.readouterr().out.splitlines())}
    assert verdicts[NAME]["verdict"].startswith("corrupt")
    assert all(v["ok"] for name, v in verdicts.items() if name != NAME)  # one bad file fails only itself

    assert run(["models", "rm", NAME]) == 0
    assert cache_files(tmp_path) == []


def test_only_https_file_and_local_http_urls_are_accepted():
    for url in (
        "https://example.org/m.pt",
        "file:///tmp/m.pt",
        "http://127.0.0.1:8000/m.pt",
        "http://localhost/m",
    ):
        check_url(url)
    for url in ("http://example.org/m.pt", "ftp://example.org/m.pt", "example.org/m.pt"):
        with pytest.raises(ValueError, match="unsupported url"):
            check_url(url)


def test_retry_policy_reads_the_environment_when_asked(monkeypatch):
    monkeypatch.setenv("MMGEN_DOWNLOAD_RETRIES", "1")
    monkeypatch.setenv("MMGEN_DOWNLOAD_BACKOFF", "0.5")
    assert RetryPolicy.from_env() == RetryPolicy(retries=1, backoff=0.5)
    monkeypatch.setenv("MMGEN_DOWNLOAD_RETRIES", "many")
    with pytest.raises(ConfigError, match=r"\$MMGEN_DOWNLOAD_RETRIES"):
        RetryPolicy.from_env()


def test_without_a_terminal_progress_is_a_few_plain_lines(tmp_path, server, official_pt, monkeypatch, capsys):
    from mmgen.weights import pull

    register(tmp_path, [server.add("/tiny.pt", official_pt)], official_pt)
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert pull(NAME).fetched
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"mmgen: downloading {NAME}: 0 B of {len(official_pt) / 1e6:.1f} MB"
    assert 3 <= len(lines) <= 6 and "100%" in lines[-1]


def test_ctrl_c_keeps_the_partial_download_and_the_next_pull_resumes_it(tmp_path, server, official_pt, monkeypatch):
    url = server.add("/tiny.pt", official_pt, delay=0.1)  # ~2 s of transfer: time to press Ctrl-C
    register(tmp_path, [url], official_pt)
    process = subprocess.Popen(mmgen_command("models", "pull", NAME), env=mmgen_env(tmp_path), text=True,
                               stderr=subprocess.PIPE)
    seen = [process.stderr.readline()]  # the first progress line: the transfer has begun
    assert seen[0].startswith(f"mmgen: downloading {NAME}: "), seen
    part = tmp_path / "cache" / "models" / NAME / f"{hashlib.sha256(official_pt).hexdigest()}.part"
    waited = time.monotonic()  # until the first bytes are on disk, however loaded the machine is
    while not (part.is_file() and part.stat().st_size) and time.monotonic() - waited < 300:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    code, stderr = process.wait(timeout=60), "".join(seen) + process.stderr.read()

    kept = part.stat().st_size
    assert code == 130 and "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1].startswith(f"mmgen: interrupted; kept the partial download of {NAME} (")
    assert stderr.splitlines()[-1].endswith(f") in {part}: `mmgen models pull {NAME}` resumes it")
    assert 0 < kept < len(official_pt) and part.read_bytes() == official_pt[:kept]

    server.files["/tiny.pt"].delay = 0.0
    use_env(monkeypatch, tmp_path)
    assert run(["models", "pull", NAME, "--quiet"]) == 0
    assert server.requests[-1].range == f"bytes={kept}-"  # only the rest was fetched
    assert cache_files(tmp_path) == ["model.json", "model.safetensors"]


def test_a_size_is_shown_in_the_unit_its_rounded_value_fits():
    """Sizes (download progress and rates, `models list`, disk space) are shown to a tenth in the smallest unit where
    that is under 1000: 999,950 bytes were "1000.0 kB", a unit too small, at every boundary up to PB."""
    from mmgen.terminal import size_text

    assert [size_text(n) for n in (0, 999, 1000)] == ["0 B", "999 B", "1.0 kB"]
    for unit, scale, larger in (("kB", 10**3, "MB"), ("MB", 10**6, "GB"), ("GB", 10**9, "TB"), ("TB", 10**12, "PB")):
        just_under = 1000 * scale - scale // 20 - 1  # 999.949… of the unit: shown as 999.9
        assert size_text(just_under) == f"999.9 {unit}", unit
        assert size_text(just_under + 1) == size_text(1000 * scale - 1) == f"1.0 {larger}", unit
        assert size_text(1000 * scale, approximate=True) == f"~1.0 {larger}"
    assert (size_text(10**18), size_text(None)) == ("1000.0 PB", "?")  # no larger unit


def test_a_resumed_downloads_rate_counts_only_the_bytes_fetched_now(monkeypatch, capsys):
    """Resumed at 5 of 10 MB, 2.5 MB fetched in 1 s: 2.5 MB/s, not 7.5 (the bytes already on disk are not speed), and
    the time left at that rate, as the bar and every other plain line say it (it had none)."""
    from mmgen.weights import progress

    clock = iter([100.0, 101.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with progress.ByteProgress("downloading x") as bar:
        bar.start(5_000_000, 10_000_000)
        bar.advance(2_500_000)
    assert capsys.readouterr().err.splitlines() == [
        "mmgen: downloading x: 5.0 MB of 10.0 MB, resuming", "mmgen: downloading x: 7.5 MB of 10.0 MB (75%, 2.5 MB/s, ETA 0:00:01)"]


def test_a_slow_downloads_plain_lines_say_what_has_arrived_of_the_whole(monkeypatch, capsys):
    """In a log, a download that crawls says what has arrived of what was announced at least every 30 s, not the
    announced size alone until a quarter of it is there (1.4 MB of 560 MB)."""
    from mmgen.weights import progress

    clock = iter([100.0, 110.0, 131.0, 140.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with progress.ByteProgress("downloading x") as bar:
        bar.start(0, 560_000_000)
        bar.advance(1_000)
        bar.advance(1_399_000)
        bar.advance(1_000)
    assert capsys.readouterr().err.splitlines() == [
        "mmgen: downloading x: 0 B of 560.0 MB",
        "mmgen: downloading x: 1.4 MB of 560.0 MB (0%, 45.2 kB/s, ETA 3:26:09)"]  # at that rate, from its start

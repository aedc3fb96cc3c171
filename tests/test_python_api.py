"""The Python API (mmgen.pipelines) as a library caller meets it: a wrong argument is refused as the function is
called, in one line of mmgen's own errors, before any work."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import pytest
from cli_here import run_here
from mmgen_cli import mmgen_env

from mmgen.errors import InvalidArgument, OutputExists, UsageError
from mmgen.pipelines import (
    AnimateSettings,
    GenerateSettings,
    SoundtrackSettings,
    animate,
    generate,
    generate_files,
    soundtrack,
)
from mmgen.pipelines.retake import retake
from mmgen.pipelines.settings import RetakeSettings

CALLS = [
    (lambda d: soundtrack(d / "clip.mp4", d / "o.mp4", GenerateSettings(seed=1)),
     "soundtrack(): settings must be a SoundtrackSettings, got GenerateSettings (the settings of generate)"),
    (lambda d: soundtrack(d / "clip.mp4", d / "o.mp4", {"seed": 1}),
     "soundtrack(): settings must be a SoundtrackSettings, got {'seed': 1}"),
    (lambda d: soundtrack(5, d / "o.mp4"), "soundtrack(): input must be a path (a str or a pathlib.Path), got 5"),
    (lambda d: soundtrack(None, d / "o.mp4"), "soundtrack(): input must be a path (a str or a pathlib.Path), got None"),
    (lambda d: soundtrack(str(d / "clip.mp4"), b"o.mp4"),
     "soundtrack(): output must be a path (a str or a pathlib.Path), got b'o.mp4'"),
    (lambda d: animate(d / "a.wav", d / "o.mp4", AnimateSettings(), overwrite="no"),
     "animate(): overwrite must be True or False, got 'no'"),
    (lambda d: retake(d / "clip.mp4", None, RetakeSettings(ranges=("0:1",)), progress=3),
     "retake(): progress must be a function taking a ProgressEvent, got 3"),
    (lambda d: generate(SoundtrackSettings()),
     "generate(): settings must be a GenerateSettings, got SoundtrackSettings (the settings of soundtrack)"),
    (lambda d: generate(GenerateSettings(), batch_size=0),
     "generate(): batch_size must be a whole number of at least 1, got 0"),
    (lambda d: generate_files(GenerateSettings()),
     "generate_files(): out_dir must be a path (a str or a pathlib.Path), got GenerateSettings (the settings of generate)"),
    (lambda d: generate_files(d / "out", GenerateSettings(), batch_size=True),
     "generate_files(): batch_size must be a whole number of at least 1, got True"),
    (lambda d: generate(GenerateSettings(), progress=None),
     "generate(): progress must be a function taking a ProgressEvent, got None"),
    (lambda d: soundtrack(d / "clip.mp4", d / "o.mp4", SoundtrackSettings(), progress=None),
     "soundtrack(): progress must be a function taking a ProgressEvent, got None"),
    (lambda d: soundtrack(d / "clip.mp4", d / "o.mp4", inputs=[5]),  # was a TypeError from inside the run
     "soundtrack(): inputs must be a sequence of paths (each a str or a pathlib.Path), got [5]"),
    (lambda d: animate(d / "a.wav", d / "o.mp4", AnimateSettings(), inputs="abc"),  # was taken as a, b and c
     "animate(): inputs must be a sequence of paths (each a str or a pathlib.Path), got 'abc'"),
    (lambda d: retake(d / "clip.mp4", None, RetakeSettings(ranges=("0:1",)), inputs=None),
     "retake(): inputs must be a sequence of paths (each a str or a pathlib.Path), got None"),
]


@pytest.mark.parametrize(("call", "says"), CALLS, ids=[c[1].partition(" got ")[0] for c in CALLS])
def test_a_wrong_argument_is_refused_as_the_function_is_called(tmp_path: Path, call, says):
    """Was an AttributeError (`… has no attribute 'mix'`) or a TypeError (`expected str, bytes or os.PathLike`)
    from inside the run, or a bare ValueError."""
    with pytest.raises(InvalidArgument) as refused:
        call(tmp_path)
    assert str(refused.value) == says
    assert isinstance(refused.value, UsageError) and refused.value.exit_code == 2
    assert isinstance(refused.value, TypeError) and isinstance(refused.value, ValueError)  # as Python's own would be
    assert list(tmp_path.iterdir()) == []  # nothing read or written, no model loaded


def test_finetune_refuses_clips_that_are_no_folder_before_torch_loads(tmp_path: Path):
    """`mmgen.train.finetune("clips", …)` with no such folder imported torch (seconds, hundreds of MB) before the run's
    scan refused it — and under torchrun joined the job's processes first: the folder is asked as the command line
    asks it, before the trainer loads."""
    script = ("import sys; from mmgen.train import FinetuneConfig, finetune\n"
              "try:\n"
              "    finetune(sys.argv[1], sys.argv[2], FinetuneConfig())\n"
              "except Exception as e:\n"
              "    print(type(e).__name__, e, 'torch' in sys.modules)")
    clips, run_dir = tmp_path / "clips", tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", script, clips, run_dir], env=mmgen_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.stdout == f"MediaError {clips}: not a folder (give the folder that holds your video clips) False\n", \
        done.stderr
    assert not run_dir.exists()


def test_finetune_refuses_a_run_folder_it_cannot_start_in_before_torch_loads(tmp_path: Path):
    """The command line asks of the run folder (in use, not empty, nothing to resume: run_checks.check_run_folder)
    before torch loads; `mmgen.train.finetune` asked only once it had (train.setup): seconds and hundreds of MB
    before a refusal the folder alone tells."""
    script = ("import sys; from mmgen.train import FinetuneConfig, finetune\n"
              "for run_dir, resume in ((sys.argv[2], False), (sys.argv[3], True)):\n"
              "    try:\n"
              "        finetune(sys.argv[1], run_dir, FinetuneConfig(), resume=resume)\n"
              "    except Exception as e:\n"
              "        print(type(e).__name__, str(e), 'torch' in sys.modules)")
    clips, used, empty = tmp_path / "clips", tmp_path / "used", tmp_path / "empty"
    for folder in (clips, used, empty):
        folder.mkdir()
    (used / "notes.txt").write_text("mine")
    done = subprocess.run([sys.executable, "-c", script, clips, used, empty], env=mmgen_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [
        f"OutputExists {used}: the run folder is not empty (choose another run_dir= or empty it) False",
        f"UsageError {empty}: no complete checkpoint to resume from (start a new run without resume=True, or point "
        "run_dir= at the run folder) False"], done.stderr
    assert os.listdir(used) == ["notes.txt"] and os.listdir(empty) == []


HOLDER = ("import sys; from pathlib import Path; from mmgen.train.run_folder import RunFolderLock\n"
          "RunFolderLock(Path(sys.argv[1])).take(); print('held', flush=True); sys.stdin.read()")


@pytest.mark.skipif(sys.platform != "linux", reason="the holder of a flock is read from Linux's /proc/locks")
def test_finetune_resume_of_a_folder_a_run_trains_in_is_refused_as_in_use_not_answered_as_finished(tmp_path, monkeypatch):
    """`mmgen.train.finetune(…, resume=True)` asked whether the run had finished before whether another run trains
    in its folder (one resumed to more steps, its checkpoints still a finished run's): it answered "finished before",
    where the command line refuses the folder as in use (config_layers.run_config). It asks in that order now."""
    import importlib

    from mmgen.train import FinetuneConfig, finetune

    monkeypatch.setattr(importlib.import_module("mmgen.train.run"), "finished_at", lambda *args: 1)  # as finished
    data, run_dir = tmp_path / "clips", tmp_path / "run"
    data.mkdir()
    run_dir.mkdir()
    training = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], env=mmgen_env(tmp_path),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert training.stdout.readline() == "held\n"
        with pytest.raises(UsageError) as refused:
            finetune(data, run_dir, FinetuneConfig(steps=1), resume=True)
    finally:
        training.communicate("")
    assert str(refused.value) == (f"{run_dir} is in use: another mmgen finetune (pid {training.pid}) is training in "
                                  "it (wait for it to end, or choose another run_dir=)")
    assert os.listdir(run_dir) == []


def test_the_command_line_asks_of_its_run_folder_once(tmp_path, monkeypatch):
    """`mmgen finetune` asked check_run_folder twice (152247e): in run_config, before torch loads for the device,
    and again in the Python API's finetune that it calls. The API's own look stays for a Python caller."""
    import importlib

    run_module, layers = importlib.import_module("mmgen.train.run"), importlib.import_module("mmgen.train.config_layers")
    asked = []

    def check_run_folder(*args):
        asked.append(args[1])

    def run_training(*args):
        raise KeyError("not trained here")

    for module in (run_module, layers):
        monkeypatch.setattr(module, "check_run_folder", check_run_folder)
    monkeypatch.setattr(importlib.import_module("mmgen.train.trainer"), "run_training", run_training)
    (tmp_path / "clips").mkdir()
    run_here("finetune", tmp_path / "clips", "--from", "demo", "-o", tmp_path / "run", env=mmgen_env(tmp_path))
    assert asked == [tmp_path / "run"]
    with pytest.raises(KeyError):
        run_module.finetune(tmp_path / "clips", tmp_path / "api", run_module.FinetuneConfig())
    assert asked == [tmp_path / "run", tmp_path / "api"]


def test_a_numpy_batch_size_is_taken_as_the_whole_number_it_is(tiny):
    """batch_size=numpy.int64(1) passed the check and was kept as it was given: the result's provenance held a numpy
    integer, which json.dumps (the sidecar) refuses after all the sampling."""
    import json

    import numpy as np

    [result] = generate(GenerateSettings(model=str(tiny), steps=1, seed=1), batch_size=np.int64(1))
    assert type(result.provenance.batch_size) is int
    assert json.loads(json.dumps(result.to_json()))["batch_size"] == 1


NOTE = "from mmgen.media.notes import note; note('x.mp4', 'its 6-channel audio is mixed to mono', 'surround')"


def test_a_library_callers_notes_go_to_its_logging_setup_not_to_stderr():
    """A pipeline never prints: with no logging set up, a note went to stderr through Python's last-resort handler
    (the package's logger had no handler); now it goes nowhere unless the caller's logging takes it."""
    quiet = subprocess.run([sys.executable, "-c", NOTE], capture_output=True, text=True, check=True)
    assert (quiet.stdout, quiet.stderr) == ("", "")
    logged = subprocess.run([sys.executable, "-c", f"import logging; logging.basicConfig(); {NOTE}"],
                            capture_output=True, text=True, check=True)
    assert logged.stderr == "WARNING:mmgen.media.notes:x.mp4: its 6-channel audio is mixed to mono\n"


def test_the_command_line_says_the_notes_on_its_stderr_as_they_are_and_only_there():
    """A program embedding `mmgen.cli.run` that had set up logging got each note twice: the command's line and its
    own logging's. The command's notes are its stderr lines alone; once it is over, the program's logging has them."""
    from mmgen.cli import notes_on_stderr
    from mmgen.media.notes import note

    said, logged = io.StringIO(), []
    programs = logging.Handler(logging.WARNING)
    programs.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger().addHandler(programs)
    try:
        with redirect_stderr(said), notes_on_stderr():
            note("y.mp4", "its 6-channel audio is mixed to mono", "surround")
        note("z.mp4", "its 6-channel audio is mixed to mono", "surround")  # the command over: not on its stderr
    finally:
        logging.getLogger().removeHandler(programs)
    assert said.getvalue() == "y.mp4: its 6-channel audio is mixed to mono\n"
    assert logged == ["z.mp4: its 6-channel audio is mixed to mono"]


def test_each_call_says_its_own_notes(tiny, tmp_path, caplog):
    """A note was said once per process: a program that animated a surround sound twice heard that it was mixed to
    mono only the first time. Each call says its notes once, however many times it reads the file."""
    from media_factory import write_test_audio

    sound = write_test_audio(tmp_path / "surround.wav", seconds=0.5, channels=6, codec="pcm_s16le").path
    settings = AnimateSettings(model=str(tiny), steps=1)
    with caplog.at_level(logging.WARNING, logger="mmgen"):
        for k in range(2):
            animate(sound, tmp_path / f"out{k}.mp4", settings)
    notes = [record.getMessage() for record in caplog.records if record.name == "mmgen.media.notes"]
    assert notes == [f"{sound}: the model hears its 6-channel audio mixed to mono"] * 2


def test_a_batch_planned_in_one_call_and_run_in_another_says_each_note_once(tiny, tmp_path, caplog):
    """Planning a batch reads its inputs and so does running it: `plan_batch` then `run_batch`, two calls of one
    batch's work, said which of a file's two pictures is read twice (the command line, one call, said it once)."""
    from media_factory import write_many_streams

    from mmgen.pipelines.batch import plan_batch, run_batch

    write_many_streams(tmp_path / "angles.mp4", videos=2, audios=1)
    batch = tmp_path / "batch.yaml"
    batch.write_text(f"defaults:\n  model: {tiny}\n  steps: 1\njobs:\n  - kind: soundtrack\n    input: angles.mp4\n")
    with caplog.at_level(logging.WARNING, logger="mmgen"):
        outcomes = run_batch(plan_batch(batch, tmp_path / "out"))
    assert [outcome.ending for outcome in outcomes] == ["done"]
    notes = [record.getMessage() for record in caplog.records if record.name == "mmgen.media.notes"]
    assert notes == [f"{tmp_path / 'angles.mp4'}: using video stream 0 of 2; the others are left out"]


def test_the_command_line_gives_a_program_that_embeds_it_its_warnings_filters_back(tmp_path):
    """`mmgen.cli.run` hid libraries' warnings (warnings.simplefilter("ignore")) for the rest of the program that
    embedded it; they are hidden while the command runs, and the program's own filters are back as it returns."""
    import warnings

    warnings.simplefilter("error", UserWarning)  # the program's own (pytest restores the filters after the test)
    before = list(warnings.filters)
    done = run_here("--version", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert warnings.filters == before
    with pytest.raises(UserWarning):
        warnings.warn("the program's own", UserWarning, stacklevel=1)


def test_the_command_line_gives_a_program_that_embeds_it_its_environment_back(tmp_path, monkeypatch):
    """`mmgen.cli.run(["--debug", ...])` left MMGEN_DEBUG=1 in the program that embedded it (set for the processes
    a command starts), so every later run printed a traceback with its one-line error; it is unset again."""
    from mmgen.cli import run

    monkeypatch.delenv("MMGEN_DEBUG", raising=False)
    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))
    for argv, traceback in ((["--debug", "generate", "--steps", "x"], True), (["generate", "--steps", "x"], False)):
        err = io.StringIO()
        with redirect_stderr(err):
            assert run(argv) == 2
        assert ("Traceback" in err.getvalue()) is traceback, err.getvalue()
        assert "MMGEN_DEBUG" not in os.environ


def test_the_readmes_python_api_paragraph_holds_true():
    """Its settings build, the wrong values it names are refused as it says, and the names it gives exist."""
    import mmgen.errors
    import mmgen.pipelines

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("The Python API takes the same settings"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    wrong = paragraph[paragraph.index("a wrong value ("):paragraph.index("raises `mmgen.errors.InvalidSetting`")]
    namespace = vars(mmgen.pipelines) | {name: getattr(mmgen.pipelines, name) for name in mmgen.pipelines.__all__}
    examples = re.findall(r"\w+Settings\([^()]*(?:\([^()]*\)[^()]*)*\)", paragraph)
    assert len(examples) == 6, examples
    for example in examples:
        if example in wrong:
            with pytest.raises(mmgen.errors.InvalidSetting):
                eval(example, namespace)
        else:
            assert isinstance(eval(example, namespace), mmgen.pipelines.RunSettings), example
    for call in ("soundtrack(", "generate(", "animate(", "retake("):
        assert call in paragraph and callable(getattr(mmgen.pipelines, call[:-1]))
    assert "`plan_batch`, `run_batch` — from `mmgen.pipelines` too" in paragraph  # not only from mmgen.pipelines.batch
    import mmgen.pipelines.batch

    for name in ("plan_batch", "run_batch"):
        assert name in mmgen.pipelines.__all__ and getattr(mmgen.pipelines, name) is getattr(mmgen.pipelines.batch, name)
    named = re.findall(r"`mmgen\.errors\.(\w+)`", paragraph)
    assert {"InvalidSetting", "InvalidArgument", "MmgenError", "UsageError", "OutputExists"} <= set(named)
    assert all(issubclass(getattr(mmgen.errors, name), mmgen.errors.MmgenError) for name in named)


def test_an_existing_output_is_refused_in_the_words_of_its_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The hint named the command line's flag to a Python caller, who has no flags: it names the argument there."""
    (tmp_path / "clip_0000.mp4").write_bytes(b"mine")
    for name, value in mmgen_env(tmp_path).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)
    with pytest.raises(OutputExists) as refused:
        generate_files(tmp_path, GenerateSettings(previews=False))
    assert str(refused.value) == f"{tmp_path / 'clip_0000.mp4'} already exists (pass overwrite=True to replace it)"
    done = run_here("generate", "-o", tmp_path, "--no-previews", env=mmgen_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr == f"mmgen: error: {tmp_path / 'clip_0000.mp4'} already exists (pass --overwrite to replace it)\n"
    assert str(refused.value).endswith("(pass overwrite=True to replace it)")  # the same error, after the command
    assert (tmp_path / "clip_0000.mp4").read_bytes() == b"mine"


def test_a_python_callers_errors_name_its_arguments_and_the_command_lines_its_flags(tmp_path, monkeypatch):
    """Errors met from Python named the command line's flags (`--dtype must be one of …`, `--lora-targets: …`),
    which a Python caller never wrote: each names the argument or field there, and the flag only while the command
    line runs (errors.command_line_words)."""
    import mmgen
    from mmgen.adapters.spec import LoraSpec
    from mmgen.media.delivery import Delivery
    from mmgen.weights import import_weights

    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))
    demo = Path(mmgen.__file__).parent / "assets" / "demo.safetensors"
    calls = [(lambda: import_weights(demo, "mine", dtype="fp64"), "dtype must be one of", "--dtype must be one of"),
             (lambda: LoraSpec(2, 1.0, "bogus"), "lora_targets: 'bogus' is not one of",
              "--lora-targets: 'bogus' is not one of"),
             (lambda: LoraSpec(2, -1.0), "lora_alpha must be", "--lora-alpha must be"),
             (lambda: Delivery(sample_rate=5), "sample_rate must be between", "--sample-rate must be between")]
    said_in_each_callers_words(calls, UsageError, str.startswith)



def test_a_python_callers_hints_name_its_arguments_and_the_command_lines_its_flags(tmp_path, monkeypatch):
    """Hints met from Python named flags a Python caller never wrote (`register the adapter under another --name`,
    `drop --arch/--config`, `lower --lr …`, `a smaller --batch-size`): each names the argument there, the flag only
    while the command line runs."""
    import torch

    import mmgen
    from mmgen.adapters.registration import register
    from mmgen.errors import MmgenError
    from mmgen.runtime.processes import Processes
    from mmgen.train.divergence import DivergenceWatch
    from mmgen.train.interrupt import CheckpointNotSaved
    from mmgen.weights import import_weights

    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))
    demo = Path(mmgen.__file__).parent / "assets" / "demo.safetensors"

    def diverged() -> None:  # finetune(…, FinetuneConfig(lr=1e30)): its second step's loss is no number
        watch = DivergenceWatch(torch.device("cpu"), gradients_may_overflow=False)
        watch.observe(2, torch.tensor(float("nan")), torch.tensor(1.0))
        watch.check(Processes(), 2, None)

    def out_of_memory() -> None:  # a stop asked for a checkpoint, and saving it ran out of memory
        raise CheckpointNotSaved(3, MemoryError())

    calls = [(lambda: register(tmp_path / "a.safetensors", "demo"), "(register the adapter under another name=)",
              "(register the adapter under another --name)"),
             (lambda: import_weights(demo, "landscape", arch="mm-unet"),  # the demo's file, not the landscape's
              "(import it under a new name without arch=/config=; its metadata says what it is)",
              "(import it under a new name without --arch/--config; its metadata says what it is)"),
             (diverged, "(lower lr= (or raise warmup=, or set grad_clip=) and start again)",
              "(lower --lr (or raise --warmup, or set --grad-clip) and start again)"),
             (out_of_memory, "fewer or shorter clips, a smaller batch_size=)", "fewer or shorter clips, a smaller --batch-size)")]
    said_in_each_callers_words(calls, MmgenError, str.endswith)


def test_a_python_callers_output_is_named_by_its_argument_not_by_minus_o(tmp_path):
    """A Python caller names the output `output=` (generate_files: `out_dir=`), yet an output refused was said with
    `-o`, a flag it never wrote (`e.g. -o out.mp4`, `choose a shorter name with -o`): the hint names the argument,
    and -o only while the command line runs."""
    from media_factory import write_test_audio, write_test_video

    from mmgen.errors import command_line_words

    clip = write_test_video(tmp_path / "clip.mp4", seconds=0.5, size=(16, 16)).path
    sound = write_test_audio(tmp_path / "song.wav", seconds=0.5).path
    long_name = tmp_path / ("x" * 300 + ".mp4")
    calls = [
        (lambda: soundtrack(clip, tmp_path / "out.avi"), f"(e.g. output='{tmp_path / 'out.mp4'}')",
         f"(e.g. -o {tmp_path / 'out.mp4'})"),
        (lambda: generate_files(tmp_path / "clips.mp4"),
         f"give out_dir='{tmp_path / 'clips'}/', or out_dir='{tmp_path / 'clips.mp4'}/' for a folder of that name)",
         f"give -o {tmp_path / 'clips'}/, or -o {tmp_path / 'clips.mp4'}/ for a folder of that name)"),
        (lambda: animate(sound, long_name), "(choose a shorter name with output=)", "(choose a shorter name with -o)"),
    ]
    for call, python, command_line in calls:
        with pytest.raises(UsageError) as refused:
            call()
        assert str(refused.value).endswith(python), str(refused.value)
        with command_line_words(), pytest.raises(UsageError) as refused:
            call()
        assert str(refused.value).endswith(command_line), str(refused.value)
    assert not (tmp_path / "clips.mp4").exists()

def test_a_command_line_running_in_another_thread_leaves_a_python_callers_words_alone(tmp_path):
    """Which words an error speaks was one global of the process: a command line run in one thread (mmgen.cli.run
    embedded in a program) turned a Python call's errors in another thread to flags (`pass --overwrite …`). It is
    the call's own now (a context variable): the command line's thread alone speaks in flags."""
    import threading

    from mmgen.errors import command_line_words

    inside, done = threading.Event(), threading.Event()
    said = []

    def command_line() -> None:
        with command_line_words():
            said.append(OutputExists("clip.mp4: exists").hint)
            inside.set()
            done.wait(5)

    thread = threading.Thread(target=command_line)
    thread.start()
    try:
        assert inside.wait(5)
        assert OutputExists("clip.mp4: exists").hint == "pass overwrite=True to replace it"
    finally:
        done.set()
        thread.join()
    assert said == ["pass --overwrite to replace it"]


def test_the_python_apis_errors_are_exported_beside_its_functions():
    """`mmgen.pipelines` exported InvalidSetting but not InvalidArgument, which its functions raise as they are
    called (README): both are there, as mmgen.errors has them."""
    import mmgen.errors
    import mmgen.pipelines

    assert mmgen.pipelines.InvalidArgument is mmgen.errors.InvalidArgument
    assert mmgen.pipelines.InvalidSetting is mmgen.errors.InvalidSetting
    assert {"InvalidArgument", "InvalidSetting"} <= set(mmgen.pipelines.__all__)


def test_two_threads_gathering_file_notes_at_once_each_get_their_own():
    """A Python program building two clip datasets at once (threads; or a test's two ranks): the notes gathered for a
    folder were one process-wide slot, so the thread that finished first took the other's notes and the other
    failed (`'NoneType' object has no attribute 'items'`). Each thread gathers its own."""
    import threading

    from mmgen.media.notes import gathered_notes, note

    both_in, first_out = threading.Barrier(2, timeout=10), threading.Event()
    said: dict[str, list[str]] = {}

    def gather(name: str, finishes_first: bool) -> None:
        with gathered_notes() as lines:
            note(f"{name}.mp4", "surround audio mixed to mono", "surround audio mixed to mono")
            both_in.wait()
            if not finishes_first:
                first_out.wait(10)
        if finishes_first:
            first_out.set()
        said[name] = lines

    threads = [threading.Thread(target=gather, args=(name, name == "a")) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert said == {name: [f"1 file: surround audio mixed to mono ({name}.mp4)"] for name in ("a", "b")}


def _interrupt_as_it_returns(code, called_from=None):
    """A trace function that raises KeyboardInterrupt as the first call of `code` (from `called_from`'s, if given)
    returns: a Ctrl-C landing in the window CPython's `with` has between a context manager's __enter__ and its
    block, where no __exit__ follows."""
    fired = []

    def tracer(frame, event, arg):
        if (event == "call" and frame.f_code is code and not fired
                and (called_from is None or frame.f_back.f_code is called_from)):
            def local(frame, event, arg):
                if event == "return" and not fired:
                    fired.append(frame)
                    raise KeyboardInterrupt
                return local
            return local
        return None
    return tracer, fired


def _generate_interrupted(settings, code, called_from=None) -> list:
    """`generate(settings)` with a Ctrl-C as the first call of `code` returns (_interrupt_as_it_returns): it raises
    KeyboardInterrupt. The frames it fired in."""
    tracer, fired = _interrupt_as_it_returns(code, called_from)
    sys.settrace(tracer)
    try:
        with pytest.raises(KeyboardInterrupt):
            generate(settings)
    finally:
        sys.settrace(None)
    return fired


def test_a_ctrl_c_as_grad_mode_is_switched_off_leaves_the_callers_grad_mode_on(tiny):
    """A Ctrl-C right after torch.no_grad().__enter__ returned left grad mode off in the caller's process for good
    (probe 46: 2 real SIGINTs in 383 calls): its tensors no longer required grad."""
    import torch

    fired = _generate_interrupted(GenerateSettings(model=str(tiny), steps=1, seed=1), torch.no_grad.__enter__.__code__)
    assert fired
    assert torch.is_grad_enabled()
    assert (torch.ones(2, requires_grad=True) * 2).sum().requires_grad


def test_a_ctrl_c_as_the_meta_device_is_pushed_leaves_the_callers_default_device_and_later_calls_alone(tiny):
    """A Ctrl-C landing as build_model's device mode had been pushed (`with torch.device("meta")`, now on_device)
    left it on torch's function-mode stack: every tensor made later in the process was on meta, and every later
    call failed with "TypeError: can't convert meta device type tensor to numpy". The call gives back the stack it
    found."""
    import torch
    from torch.overrides import _get_current_function_mode_stack

    from mmgen.runtime.torch_state import on_device

    settings = GenerateSettings(model=str(tiny), steps=1, seed=1)
    fired = _generate_interrupted(settings, on_device.__enter__.__code__)
    assert fired and fired[0].f_locals["self"].mode.device.type == "meta"
    assert _get_current_function_mode_stack() == []
    assert torch.ones(1).device.type == "cpu" and torch.get_default_device().type == "cpu"
    [result] = generate(settings)  # and the next call works
    assert result.clip.video.shape[0] > 0


def test_a_ctrl_c_as_torch_takes_the_device_mode_off_for_a_moment_is_a_keyboardinterrupt(tiny):
    """A Ctrl-C inside torch's `_pop_mode_temporarily` (a layer's init under build_model's device mode), after it
    took the mode off and before its `try` puts it back, made the `with torch.device` exit pop an empty stack: the
    caller got `RuntimeError: trying to pop from empty mode stack` in place of its KeyboardInterrupt (probe 46)."""
    import torch
    import torch.overrides
    from torch.overrides import _get_current_function_mode_stack

    temporarily = torch.overrides._pop_mode_temporarily.__wrapped__.__code__
    settings = GenerateSettings(model=str(tiny), steps=1, seed=1)
    fired = _generate_interrupted(settings, torch.overrides._pop_mode.__code__, called_from=temporarily)
    assert fired
    assert _get_current_function_mode_stack() == [] and torch.ones(1).device.type == "cpu"
    [result] = generate(settings)  # and the next call works
    assert result.clip.video.shape[0] > 0


def _autocast_nesting():
    import torch
    nesting = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return nesting


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_ctrl_c_as_an_autocast_block_starts_leaves_the_callers_autocast_as_it_was(tiny, precision):
    """A Ctrl-C right after torch.autocast's __enter__ returned (the sampler's autocast, or a norm's
    `torch.autocast("cpu", enabled=False)`) left the caller's autocast switched on or off, in another dtype, and
    its nesting count raised (its cache never cleared). The call gives back the autocast state it found: here the
    caller's own fp16 autocast region."""
    import torch

    with torch.autocast("cpu", dtype=torch.float16, cache_enabled=False):
        fired = _generate_interrupted(GenerateSettings(model=str(tiny), steps=1, seed=1, precision=precision),
                                      torch.autocast.__enter__.__code__)
        assert fired
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16
        assert not torch.is_autocast_enabled("cuda") and not torch.is_autocast_cache_enabled()
        assert _autocast_nesting() == 1
    assert not torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert torch.is_autocast_cache_enabled() and _autocast_nesting() == 0


def test_a_call_inside_the_callers_meta_device_makes_real_tensors_and_gives_the_device_back(tiny):
    """A call inside its caller's `with torch.device("meta")` (or after torch.set_default_device("meta")) failed with
    "TypeError: can't convert meta device type tensor to numpy" (probe 51): the caller's default device leaked into
    mmgen's, which is its settings'. The call takes the device modes off and gives them back; a function mode the
    caller set (a profiler's, a FlopCounterMode) stays in force through it."""
    import numpy as np
    import torch
    from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack

    class Counting(TorchFunctionMode):
        seen = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Counting.seen += 1
            return func(*args, **(kwargs or {}))

    settings = GenerateSettings(model=str(tiny), steps=1, seed=1)
    with torch.device("meta"), Counting() as counting:
        stack, current = _get_current_function_mode_stack(), torch.utils._device.CURRENT_DEVICE
        [inside] = generate(settings)
        assert _get_current_function_mode_stack() == stack and counting.seen > 0
        assert torch.ones(1).device.type == "meta" and torch.get_default_device().type == "meta"
        assert torch.utils._device.CURRENT_DEVICE == current
    torch.set_default_device("meta")
    try:
        [by_default] = generate(settings)
        assert torch.ones(1).device.type == "meta" and torch.utils._device.CURRENT_DEVICE == torch.device("meta")
    finally:
        torch.set_default_device(None)
    assert _get_current_function_mode_stack() == [] and torch.ones(1).device.type == "cpu"
    video = np.asarray(inside.clip.video)
    assert video.size and np.isfinite(video.astype(np.float32)).all()
    assert np.array_equal(video, np.asarray(by_default.clip.video))  # the same seed's clip, made on mmgen's device


def said_in_each_callers_words(calls, error, where_said) -> None:
    """Each (call, python, command_line): the error `call` raises says `python`'s words from Python and
    `command_line`'s while the command line runs (`where_said`: str.startswith or str.endswith)."""
    from mmgen.errors import command_line_words

    for call, python, command_line in calls:
        with pytest.raises(error) as refused:
            call()
        assert where_said(str(refused.value), python), str(refused.value)
        with command_line_words(), pytest.raises(error) as refused:
            call()
        assert where_said(str(refused.value), command_line), str(refused.value)


def test_a_ctrl_c_while_a_call_first_loads_a_library_leaves_the_library_whole_for_the_next_calls(tiny, tmp_path,
                                                                                                 monkeypatch):
    """A Ctrl-C while a program's first `generate` loaded sympy (torch.broadcast_shapes' first use) left it half
    loaded: every later call of the process failed with `AttributeError: module 'sympy' has no attribute 'core'`,
    until a restart (probe 61). Any library a call loads for the first time — scipy for the loudness, torch._dynamo
    for finetune's optimizer, here one the program's progress callback loads, built as sympy is — now loads whole:
    the stop raises as its import ends, and the next call runs."""
    import _thread

    package = tmp_path / "symbolic_lib"
    package.mkdir()
    (package / "__init__.py").write_text("import symbolic_lib.core\nimport symbolic_lib.printing\n"
                                         "VERSION = symbolic_lib.core.VERSION\n")
    (package / "core.py").write_text("VERSION = '1.0'\n")
    (package / "printing.py").write_text("")
    monkeypatch.syspath_prepend(tmp_path)

    class CtrlCAsPrintingLoads:
        def find_spec(self, name, path=None, target=None):
            if name == "symbolic_lib.printing" and not fired:
                fired.append(name)
                _thread.interrupt_main()
            return None

    fired, seen = [], []

    def progress(event):
        import symbolic_lib
        seen.append(symbolic_lib.VERSION)

    monkeypatch.setattr(sys, "meta_path", [CtrlCAsPrintingLoads(), *sys.meta_path])
    settings = GenerateSettings(model=str(tiny), steps=1, seed=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            generate(settings, progress=progress)
        assert fired
        [result] = generate(settings, progress=progress)  # and the next call runs
        assert result.clip.video.shape[0] > 0 and set(seen) == {"1.0"}
    finally:
        for name in [name for name in sys.modules if name.partition(".")[0] == "symbolic_lib"]:
            del sys.modules[name]


def test_an_fp32_call_inside_the_callers_bf16_autocast_is_fp32_as_its_records_say(tiny):
    """`generate(precision="fp32")` inside its caller's `torch.autocast("cpu", dtype=torch.bfloat16)` gave the bf16
    clip bit for bit while its sidecar said fp32 (probe 61); the caller's `torch.set_float32_matmul_precision
    ("medium")` made its products bf16 too. A call takes the caller's autocast off and does full fp32 products,
    then gives both back."""
    import torch

    settings = GenerateSettings(model=str(tiny), steps=1, seed=1, precision="fp32")
    [plain] = generate(settings)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        [inside] = generate(settings)
        assert torch.is_autocast_enabled("cpu")  # the caller's, back
    assert torch.equal(inside.clip.video, plain.clip.video) and torch.equal(inside.clip.audio, plain.clip.audio)
    assert inside.provenance.precision == "fp32"

    a, b = torch.randn(64, 64), torch.randn(64, 64)
    full = a @ b
    torch.set_float32_matmul_precision("medium")
    try:
        halved = not torch.equal(a @ b, full)  # where this CPU has bf16 products
        [medium] = generate(settings)
        assert torch.equal(medium.clip.video, plain.clip.video) and torch.equal(medium.clip.audio, plain.clip.audio)
        assert torch.equal(a @ b, full) == (not halved)  # the caller's setting, back
    finally:
        torch.set_float32_matmul_precision("highest")

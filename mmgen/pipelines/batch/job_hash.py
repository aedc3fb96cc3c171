"""A batch job's content hash: what decides its output, so that a re-run skips a job that is done and redoes one
whose file, model, adapter or settings (its upsampler's sampling among them) changed since. The manifest keeps each
job's hash; a hash once written must keep meaning the same output, so the payload of an older mmgen is worked out
too (Job.hashed_as).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmgen.adapters.store import read_file
from mmgen.config import to_dict
from mmgen.pipelines.batch.name_bytes import ascii_name, utf8_name
from mmgen.pipelines.upsampling import SR_DEFAULT, upsampler_sampling, upsampling_record
from mmgen.weights.identity import model_sha256s

if TYPE_CHECKING:
    from mmgen.pipelines.batch.schema import JobSpec
    from mmgen.pipelines.session import Run
    from mmgen.pipelines.settings import RunSettings
    from mmgen.weights import ModelCache
    from mmgen.weights.registry import Registry

# The model counts by its sha256, the seed per clip and the precision as chosen; num and the device not at all.
_NOT_HASHED = ("model", "seed", "num", "device", "precision", "audio")  # audio: said by video (False) already


def digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class JobHasher:
    """The content hashes of one batch's jobs, hashing each model and adapter file once however many jobs use it.
    `folder`: the batch file's (resolved), `output_dir` its outputs'. Where the outputs are inside the batch file's folder (a
    project, which moves whole), an input inside it is named by its path from the output folder: a project renamed,
    moved or copied (`cp -a`) whole keeps its jobs done. From the output folder, not the batch file's: another
    batch file sharing that output folder names another file by another path (the same path from two batch files'
    folders named two files, of equal size and mtime one's output was taken as the other's)."""

    def __init__(self, registry: Registry, cache: ModelCache, folder: Path, output_dir: Path):
        output_dir = output_dir.resolve()  # (`folder` is resolved)
        self.project = (folder, output_dir) if output_dir.is_relative_to(folder) else None
        self.registry = registry
        self.cache = cache
        self._model_sha256s: dict[str, tuple[str, ...]] = {}
        self._hashed: dict[tuple, list[dict]] = {}  # the hash's payloads but the seed, of the job and input in hand

    def hash(self, spec: JobSpec, input: Path | None, settings: RunSettings, run: Run,
             left_out: dict[str, Any]) -> tuple[str, tuple[dict, ...]]:
        """What decides a job's output: change any of it and a re-run redoes the job. All but the seed is the
        same for every output of one job and input, so it is worked out once for them. Also the payloads (but the
        seed): its own, then those older mmgen versions hashed for it (Job.hashed_as). `left_out`: the `defaults:`
        values the job's run ignores, left out of its settings (plan._Planner._meant)."""
        key = (spec.index, input)
        if key not in self._hashed:
            self._hashed = {key: self._hashed_but_seed(spec, input, settings, run, left_out)}
        payloads = self._hashed[key]
        return digest({**payloads[0], "seed": run.seed}), tuple(payloads)

    def _hashed_but_seed(self, spec: JobSpec, input: Path | None, settings: RunSettings, run: Run,
                         left_out: dict[str, Any]) -> list[dict]:
        """The payload, then its variants naming the models as an older mmgen did, and, for a job whose run ignores
        a `defaults:` value left out of its settings, taking that value into options and sampling as mmgen did
        before 8f3d4e8 (it ran such a job and hashed what it ignored: that job is done, not changed)."""
        described, located = None, []
        if input is not None:
            stat, real = input.stat(), input.resolve()
            # In a project, by its path from the output folder (see the class). mmgen before 2026-12-02 hashed its
            # real path: a variant, so a job done then is done where nothing moved.
            inside = self.project is not None and real.is_relative_to(self.project[0])
            path = utf8_name(Path(os.path.relpath(real, self.project[1])).as_posix() if inside else str(real))
            described = {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            located = [utf8_name(str(real))] if inside else []
        payload = {
            "kind": spec.kind,
            "input": described,
            "options": {k: v for k, v in dataclasses.asdict(settings).items() if k not in _NOT_HASHED},
            "sampling": to_dict(run.sampling),
            "precision": run.compute.precision,
        }
        if run.adapters:  # each by its file's sha256, as the model is: a file trained again or re-imported is new
            del payload["options"]["adapter"]
            payload["adapters"] = [{"sha256": self.adapter_sha256(use.source), "weight": use.weight}
                                   for use in run.adapters]
        payloads = [payload]
        if left_out:
            sampled = {k: v for k, v in left_out.items() if k in payload["sampling"]}  # a guidance scale
            payloads.append({**payload, "options": {**payload["options"], **left_out},
                             "sampling": {**payload["sampling"], **sampled}})
        # A switch the run takes no notice of (a picture retake's `wav`), as older mmgen hashed a job's own one: it
        # ran `wav: true` and made what it makes without, so that record is this job done (the refusal's hint is to
        # leave it out). Hashed as a variant only: the job's own hash, and every other job's, stay as they were.
        switched = {k: not v for k in settings.ignored() if isinstance(v := getattr(settings, k), bool)}
        if switched:
            payloads += [{**each, "options": {**each["options"], **switched}} for each in payloads]
        payloads += [{**each, "input": {**each["input"], "path": path}} for path in located for each in payloads]
        # Hashed as an ASCII locale (LC_ALL=C, PYTHONUTF8=0) named a non-ASCII input before 2026-12-02: a variant, so
        # a job done there is done under any locale (name_bytes).
        payloads += [{**each, "input": {**each["input"], "path": named}} for each in payloads
                     if each["input"] and (named := ascii_name(each["input"]["path"])) != each["input"]["path"]]
        if run.upsampler:  # how it samples too (the sidecar's `upsampling`): an entry's other steps make another clip
            upsampling = upsampling_record(upsampler_sampling(self.registry.entries.get(run.upsampler)))
            # mmgen before 2026-12-03 hashed none: a variant where it samples as shipped, so its jobs stay done there
            older = payloads if upsampling == upsampling_record(SR_DEFAULT) else []
            payloads = [{**each, "upsampling": upsampling} for each in payloads] + older
        upsamplers = self.model_sha256s(run.upsampler) if run.upsampler else (None,)
        return [{**each, "model_sha256": model, "upsampler_sha256": upsampler}
                for each in payloads for model in self.model_sha256s(run.model) for upsampler in upsamplers]

    def model_sha256s(self, name: str) -> tuple[str, ...]:
        if name not in self._model_sha256s:
            self._model_sha256s[name] = model_sha256s(name, self.registry, self.cache)
        return self._model_sha256s[name]

    def adapter_sha256(self, source: str) -> str:
        """The sha256 of the file an `--adapter` value reads (adapters.store.read_file), hashed once while it
        stays as it is, as a model given by path is (ModelCache.file_sha256)."""
        return self.cache.file_sha256(read_file(source))

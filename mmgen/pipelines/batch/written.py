"""Which files in its output folder a batch file wrote, as the manifest says: a file a job may replace without
--overwrite is one recorded as that batch file's and unchanged since, or one the job's own stopped run left."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mmgen.errors import in_callers_words
from mmgen.pipelines.batch.manifest import ByPath, Manifest, Record
from mmgen.pipelines.batch.targets import Places
from mmgen.spelled_paths import SpelledPaths

if TYPE_CHECKING:
    from mmgen.pipelines.batch.jobs import Job


class Written:
    """What the manifest says a batch file wrote into its folder: a file a job may replace is one the manifest
    recorded as that batch file's, as it is now (size and sha256), or one the job's own stopped run left."""

    def __init__(self, manifest: Manifest, batch_file: Path, places: Places | None = None):
        self.manifest = manifest
        self.places = places or Places()
        self.spellings = SpelledPaths()
        self.batch_file = batch_file
        self.latest = ByPath()  # by output: its last Record
        self.files = ByPath()  # by path: its FileRecord, as this batch's last "done" record of it left it
        self.started = ByPath()  # by output, its last "started" Record
        for record in manifest.history():
            self.latest[record.output] = record
            if record.state == "started":
                self.started[record.output] = record
            elif record.state == "done":
                for file in record.files.values():
                    if manifest.ran_by(record, batch_file):
                        self.files[file.path] = file
                    else:
                        self.files.pop(file.path, None)

    def spelled(self, job: Job) -> dict[str, tuple[Path, Path]]:
        """The job's files that are not there as spelled but under another Unicode form of their names, or that go into a
        folder there under another form of its name (SpelledPaths.respelled), by their manifest path: (the job's path, the one
        there, or where it would be in that folder)."""
        found = {}
        for path in job.files.files.values():
            if (there := self.spellings.respelled(path, self.manifest.folder)) is not None:
                found[self.manifest.relative(path)] = (path, there)
        return found

    def in_the_way(self, job: Job, record: Record | None) -> str | None:
        """Why an existing file of the job must not be replaced without --overwrite, or None."""
        for path in job.files.files.values():
            if self.places.exists(path) and (why := self._why(path, job.output, record)):
                return f"{path} exists and {why} (pass {in_callers_words('--overwrite', 'overwrite=True')} to replace it)"
        return None

    def _why(self, path: Path, output: str, record: Record | None) -> str | None:
        try:
            stat, key = path.lstat(), self.manifest.relative(path)
        except (OSError, ValueError):
            return "was not written by this batch"
        if path.is_symlink():  # the batch never writes one
            return "was not written by this batch"
        known = self.files.get(key)
        if known is not None and self.manifest.unchanged(known, key):  # at the job's spelling of its recorded path
            return None
        started = self.started.get(output)
        if (record is not None and record.state != "done" and started is not None
                and self.manifest.ran_by(started, self.batch_file) and stat.st_mtime_ns >= _ns(started.at)):
            return None  # written by the job's last run, stopped or failed before it could record it as done
        return "was changed since this batch wrote it" if known is not None else "was not written by this batch"


def _ns(at: str) -> int:
    """A record's time in nanoseconds (a little early, as files are stamped by a coarser clock)."""
    try:
        return int(datetime.fromisoformat(at).timestamp() * 1e9) - 10_000_000
    except ValueError:
        return 2**63

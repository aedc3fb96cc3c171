"""A stand-in for Google Drive's public folder and file pages, served by the tests' real local HTTP server, so
`mmgen models pull` runs the real gdown code (folder listing, the large-file "can't scan for viruses" form,
Range resume) against files a test makes.

    with FileServer() as server:
        drive = DriveStandIn(server)
        drive.put("Landscape.pt", data)                       # listed in the folder, downloadable
        drive.put("AIST++.pt", data, page=QUOTA_PAGE)         # Drive answers with its quota page instead
        subprocess.run(drive_mmgen_command(server, "models", "pull", "landscape"), ...)

Requests for https://drive.google.com and https://drive.usercontent.google.com are rewritten to the local server
inside the mmgen process: `drive_mmgen_command` starts `mmgen` with that rewrite installed (`redirect`), in the
same way http_server.offline_mmgen_command wraps it with an audit hook.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from http_server import FileServer

FOLDER = "1Mno4A3BUXELAdX4m650CJ1VfuMVlkz5p"  # the official folder's id, as the shipped registry names it
DRIVE_HOSTS = ("https://drive.google.com", "https://drive.usercontent.google.com")
TESTS = Path(__file__).resolve().parent

QUOTA_PAGE = (
    '<html><head><title>Google Drive - Quota exceeded</title></head><body><p class="uc-error-subcaption">'
    "Too many users have viewed or downloaded this file recently. Please try accessing the file again later. "
    "If the file you are trying to access is particularly large or is shared with many people, it may take up "
    "to 24 hours to be able to view or download the file.</p></body></html>"
)
SIGN_IN_PAGE = "<html><head><title>Sign in - Google Accounts</title></head><body>Sign in to continue</body></html>"
_HTML = {"Content-Type": "text/html; charset=utf-8"}


def file_id(name: str) -> str:
    """A Drive-like id (33 characters) for a file name."""
    return "1" + hashlib.sha256(name.encode()).hexdigest()[:32]


class DriveStandIn:
    """The official folder on a FileServer: its listing, and per file the confirmation form and the bytes."""

    def __init__(self, server: FileServer, folder: str = FOLDER):
        self.server = server
        self.folder = folder
        self.names: list[str] = []
        self._list()

    def put(self, name: str, data: bytes, *, page: str | None = None, **faults) -> str:
        """List `name` in the folder and serve `data` for it (with http_server faults), or `page` (HTML) where
        Drive would show its download form. Returns the path the file's bytes are served at."""
        if name not in self.names:
            self.names.append(name)
            self._list()
        ident = file_id(name)
        # Large files: Drive answers /uc with a form whose submit URL serves the bytes; gdown follows it.
        form = (
            '<html><head><title>Google Drive - Virus scan warning</title></head><body>'
            '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
            f'<input type="hidden" name="id" value="{ident}"><input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t"></form></body></html>'
        )
        self.server.add(f"/uc?id={ident}", (page or form).encode(), headers=_HTML)
        path = f"/download?id={ident}&export=download&confirm=t"
        headers = {"Content-Type": "application/octet-stream", "Content-Disposition": f'attachment; filename="{name}"'}
        self.server.add(path, data, headers=headers, **faults)
        return path

    def downloads(self, name: str) -> list:
        """The requests for a file's bytes so far."""
        path = f"/download?id={file_id(name)}&export=download&confirm=t"
        return [r for r in self.server.requests if r.path == path]

    def listings(self) -> int:
        return self.server.count(f"/embeddedfolderview?id={self.folder}")

    def _list(self) -> None:
        links = "".join(
            f'<div><a href="https://drive.google.com/file/d/{file_id(n)}/view?usp=drive_web">{n}</a></div>'
            for n in self.names
        )
        page = f"<html><head><title>MM-Diffusion</title></head><body>{links}</body></html>"
        self.server.add(f"/embeddedfolderview?id={self.folder}", page.encode(), headers=_HTML)


def redirect(base_url: str) -> None:
    """Send this process's requests for Drive's hosts to `base_url` (patches requests.Session.request)."""
    import requests

    original = requests.Session.request

    def request(self, method, url, *args, **kwargs):
        for host in DRIVE_HOSTS:
            if isinstance(url, str) and url.startswith(host):
                url = base_url + url[len(host) :]
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request


_REDIRECTED_MMGEN = """
import sys
sys.path.insert(0, {tests!r})
import drive_standin
drive_standin.redirect({base!r})
from mmgen.cli import main
sys.argv[0] = "mmgen"
main()
"""


def drive_mmgen_command(server: FileServer, *args: str) -> list[str]:
    """argv for `mmgen ARGS` whose Google Drive is the stand-in on `server`."""
    script = _REDIRECTED_MMGEN.format(tests=str(TESTS), base=server.base_url)
    return [sys.executable, "-c", script, *map(str, args)]

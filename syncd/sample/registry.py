"""Debian's docker-registry (distribution 2.8) serving a storage root on loopback.

It runs without a blob descriptor cache, so files changed on disk while it runs are
seen at once, and with upload purging off, so it never deletes anything by itself.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

from syncd.sample.errors import ToolError

REGISTRY_BIN = Path("/usr/bin/docker-registry")
LOOPBACK = "127.0.0.1"
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')
_PAGE = 1000
_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: {read_only}
http:
  addr: {addr}
health:
  storagedriver:
    enabled: false
"""


class Registry:
    """`with Registry(root) as registry:` serves `root`, the folder holding `docker/`."""

    def __init__(
        self, storage_root: Path, *, read_only: bool = False, start_timeout: float = 20.0
    ) -> None:
        self.storage_root = storage_root.resolve()
        self.read_only = read_only
        self.start_timeout = start_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if not REGISTRY_BIN.is_file():
            raise ToolError(f"{REGISTRY_BIN} is missing: install Debian's docker-registry")
        if not self.storage_root.is_dir():
            raise ToolError(f"registry storage root {self.storage_root} is not a directory")
        self._workdir = Path(tempfile.mkdtemp(prefix="syncd-registry-"))
        for attempt in range(3):
            # A free port can be taken between probing and binding; try another one.
            self.port = _free_port()
            if self._launch(attempt):
                return
        stderr = self._stderr()
        self.stop()
        raise ToolError(f"docker-registry would not bind a loopback port: {stderr}")

    def _launch(self, attempt: int) -> bool:
        assert self._workdir is not None
        config = self._workdir / f"config-{attempt}.yml"
        config.write_text(
            _CONFIG.format(
                root=json.dumps(str(self.storage_root)),
                read_only=str(self.read_only).lower(),
                addr=self.host,
            )
        )
        with (self._workdir / "stderr.log").open("wb") as log:
            self._process = subprocess.Popen(
                [str(REGISTRY_BIN), "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return self._wait_ready()

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._stderr()
                if "address already in use" in stderr:
                    return False
                self.stop()
                raise ToolError(f"docker-registry exited at start: {stderr}")
            if _answers(f"{self.url}/v2/"):
                return True
            time.sleep(0.05)
        stderr = self._stderr()
        self.stop()
        raise ToolError(
            f"docker-registry did not answer on {self.host} within "
            f"{self.start_timeout:.0f} s: {stderr}"
        )

    def _stderr(self) -> str:
        log = self._workdir / "stderr.log" if self._workdir else None
        text = log.read_text(errors="replace").strip() if log and log.exists() else ""
        return text[-2000:] or "(no output)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def get_json(self, path: str) -> tuple[Any, str | None]:
        """GET a JSON document; returns it and the next page's path, if any."""
        request = urllib.request.Request(urljoin(self.url, path))  # noqa: S310 - http on loopback only
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            body = json.load(response)
            match = _NEXT.search(response.headers.get("Link", ""))
        return body, match.group(1) if match else None


def list_images(registry: Registry) -> list[str]:
    """Every repo:tag the registry lists, sorted."""
    images = []
    for repo in _paged(registry, f"/v2/_catalog?n={_PAGE}", "repositories"):
        images += [f"{repo}:{tag}" for tag in _paged(registry, f"/v2/{repo}/tags/list", "tags")]
    return sorted(images)


def _paged(registry: Registry, path: str, field: str) -> list[str]:
    found: list[str] = []
    next_path: str | None = path
    while next_path:
        body, next_path = registry.get_json(next_path)
        found += body.get(field) or []
    return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port

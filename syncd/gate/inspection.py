"""The inspection gate: `import --inspect CMD`, `serve --inspect CMD`.

When everything an apply needs is staged and verified, and before anything goes live,
the far side lays out what the apply would write and runs the operator's command on it:

    STATE/inspect/files/<path>      every file the apply adds or changes, at its path in
                                    the tree, with its final bytes (read-only copies)
    STATE/inspect/manifest.json     what changes: source (import/push), export id,
                                    snapshots, the image changes and every path added,
                                    changed or removed (symlinks and removals are listed
                                    here only)

CMD runs as `/bin/sh -c CMD` in STATE/inspect, with no input, with SYNCD_INSPECT_FILES,
SYNCD_INSPECT_MANIFEST, SYNCD_ROOT, SYNCD_SOURCE (import or push), SYNCD_EXPORT (the
export id, empty for a push) and SYNCD_TARGET (the snapshot id) in its environment;
its output (the last 64 KiB) goes to the audit log and syncd's stderr, never to
stdout (serve's stdout is the protocol). Exit status 0 lets the apply go ahead; any
other status, a signal or the time limit (the process group is killed) refuses it:
nothing is applied, the staging is kept. The folder is removed afterwards either way
(the change stays described in STATE/pending.json until an apply succeeds, for
`syncd show ROOT`).

The copies cost free space on the root's file system: the bytes of the files the apply
writes. That is checked first and a shortfall refuses the apply by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from protocol.manifest import Change, TransferManifest
from protocol.tree import FileNode
from syncd.errors import SyncdError
from syncd.gate.origin import Origin
from syncd.media.images import TreeView
from syncd.media.manifest import change_json_chunks
from syncd.state import StateDir
from syncd.transport.tail import TailBuffer
from syncd.units import format_bytes

DEFAULT_TIMEOUT = 4 * 3600.0
OUTPUT_LIMIT = 64 * 1024
FOLDER = "inspect"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class InspectionRefused(SyncdError):
    """The inspection command refused the apply (or could not run); nothing was applied."""


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """The far side operator's choice (`--inspect CMD`, `--inspect-timeout`)."""

    inspect: str | None = None
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class Verdict:
    code: int
    output: str
    seconds: float

    def as_json(self, command: str) -> dict[str, object]:
        return {
            "command": command,
            "exit_status": self.code,
            "seconds": round(self.seconds, 3),
            "output": self.output,
        }


def manifest_head(origin: Origin, before: bytes, target: bytes) -> dict[str, object]:
    """The first fields of what CMD reads in manifest.json (and `syncd show ROOT`
    prints); the change follows them (media.manifest.change_json_chunks)."""
    return {"format": 1, **origin.as_json(), "before": before.hex(), "target": target.hex()}


def inspect(
    state: StateDir,
    policy: GatePolicy,
    target: TreeView,
    head: dict[str, object],
    change: TransferManifest,
) -> Verdict:
    """Lay out the files and run the command; InspectionRefused unless it exits 0."""
    assert policy.inspect is not None
    folder = state.path / FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    try:
        _check_space(state, change)
        files = folder / "files"
        files.mkdir(parents=True)
        _lay_out(files, target, change)
        with (folder / "manifest.json").open("wb") as stream:
            stream.writelines(change_json_chunks(head, change))
        env = {
            **os.environ,
            "SYNCD_INSPECT_FILES": str(files),
            "SYNCD_INSPECT_MANIFEST": str(folder / "manifest.json"),
            "SYNCD_ROOT": str(state.root),
            "SYNCD_SOURCE": str(head["source"]),
            "SYNCD_EXPORT": str(head["export"] or ""),
            "SYNCD_TARGET": str(head["target"]),
        }
        env.pop("SSH_ORIGINAL_COMMAND", None)
        return run_command(policy.inspect, folder, env, policy.timeout)
    except OSError as exc:
        raise InspectionRefused(
            f"cannot lay out the files for inspection in {folder}: {exc.strerror}; "
            "nothing was applied, the staged files are kept"
        ) from exc
    finally:
        _remove(folder)


def _check_space(state: StateDir, change: TransferManifest) -> None:
    needed = sum(p.size for p in change.paths if p.content is not None)
    free = shutil.disk_usage(state.path).free
    if needed > free:
        raise InspectionRefused(
            f"the inspection needs {format_bytes(needed)} in {state.path} for copies of the "
            f"files to inspect, which has {format_bytes(free)} free; nothing was applied"
        )


def _lay_out(files: Path, target: TreeView, change: TransferManifest) -> None:
    for entry in change.paths:
        if entry.content is None or entry.change is Change.REMOVED:
            continue
        node = target.node(entry.path)
        if not isinstance(node, FileNode):
            continue
        path = files / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, _CREATE, 0o444)
        try:
            for digest, length in node.recipe:
                data = target.read(digest, length)
                if data is None:
                    raise OSError(5, f"piece {digest.hex()[:16]} of {entry.path} is not here")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def _remove(folder: Path) -> None:
    # The command may have made files read-only or folders unwritable: give them back.
    for path in [folder, *folder.rglob("*")] if folder.exists() else []:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)
    shutil.rmtree(folder, ignore_errors=True)


def run_command(command: str, cwd: Path, env: dict[str, str], timeout: float) -> Verdict:
    """Run `sh -c command`: its output's tail kept, its process group killed at `timeout`."""
    started = time.monotonic()
    try:
        child = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return Verdict(127, f"cannot start /bin/sh: {exc.strerror}", 0.0)
    tail = TailBuffer(OUTPUT_LIMIT)
    assert child.stdout is not None
    reader = threading.Thread(target=_pump, args=(child.stdout, tail), daemon=True)
    reader.start()
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(child.pid)
        child.wait()
        reader.join(5)
        text = tail.text() + f"\n[killed after {timeout:g} s: the inspection took too long]"
        return Verdict(124, text, time.monotonic() - started)
    except BaseException:
        _kill_group(child.pid)
        child.wait()
        raise
    _kill_group(child.pid)  # what it left running in the background ends with it
    reader.join(5)
    return Verdict(128 - code if code < 0 else code, tail.text(), time.monotonic() - started)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _pump(stream: IO[bytes], tail: TailBuffer) -> None:
    while data := os.read(stream.fileno(), 65536):
        tail.add(data)

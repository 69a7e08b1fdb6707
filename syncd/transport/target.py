"""Where a push goes: `ssh://[user@]host[:port]/path`, `[user@]host:path`, or a local path.

Forms accepted by `parse_target`:

- `ssh://[user@]host[:port]/abs/path`: the path is absolute (everything from the first
  `/` after the host); an IPv6 host is written in brackets, `ssh://[::1]:2222/srv`.
  No percent-decoding is done.
- `[user@]host:path` (scp-like): the text is remote when a `:` comes before any `/`.
  The path may be absolute or relative to the remote login directory; `~` and `~/x` are
  relative to it too. An IPv6 host is written in brackets: `[::1]:/srv`, `me@[::1]:/srv`.
- anything else is a local path. A local path with a `:` before its first `/` must be
  written as `./name:with:colons`, as with scp and rsync.

Port, user and host name not given here come from ~/.ssh/config at connect time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from syncd.errors import UsageError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_BAD_HOST_CHARS = re.compile(r"[\s/@\[\]]")


@dataclass(frozen=True)
class Target:
    kind: Literal["ssh", "local"]
    user: str | None
    host: str | None
    port: int | None
    path: str

    @classmethod
    def local(cls, path: str) -> Target:
        return cls("local", None, None, None, path)

    def __str__(self) -> str:
        if self.kind == "local":
            return self.path
        assert self.host is not None
        return format_ssh(self.user, self.host, self.port, self.path)


def format_ssh(user: str | None, host: str, port: int | None, path: str) -> str:
    """`ssh://user@host:port/abs` for absolute paths, `user@host:rel` otherwise."""
    shown_host = f"[{host}]" if ":" in host else host
    login = f"{user}@{shown_host}" if user else shown_host
    if path.startswith("/"):
        port_part = f":{port}" if port is not None and port != 22 else ""
        return f"ssh://{login}{port_part}{path}"
    port_note = f" (port {port})" if port is not None and port != 22 else ""
    return f"{login}:{path}{port_note}"


def parse_target(text: str) -> Target:
    """Parse a push/serve target; `UsageError` (naming the text) when it is unusable."""
    if not text.strip():
        raise UsageError("empty target: give a local path, host:/path or ssh://host/path")
    if text.startswith("ssh://"):
        return _parse_url(text)
    if _SCHEME.match(text):
        raise UsageError(f"unsupported target {text!r}: only ssh:// URLs are understood")
    return _parse_scp(text)


def _fail(text: str, why: str) -> UsageError:
    return UsageError(f"bad target {text!r}: {why}")


def _parse_url(text: str) -> Target:
    rest = text[len("ssh://") :]
    slash = rest.find("/")
    if slash < 0:
        raise _fail(text, "no path after the host (ssh://host/absolute/path)")
    authority, path = rest[:slash], rest[slash:]
    user, hostport = _split_user(text, authority)
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise _fail(text, "unclosed '[' in the host")
        host, after = hostport[1:close], hostport[close + 1 :]
        if after and not after.startswith(":"):
            raise _fail(text, f"unexpected {after!r} after the bracketed host")
        port_text = after[1:] if after else None
    elif hostport.count(":") > 1:
        raise _fail(text, "an IPv6 address must be written in brackets: ssh://[::1]/path")
    elif ":" in hostport:
        host, _, port_text = hostport.partition(":")
    else:
        host, port_text = hostport, None
    _check_host(text, host)
    port = _parse_port(text, port_text) if port_text is not None else None
    return Target("ssh", user, host, port, path)


def _parse_scp(text: str) -> Target:
    colon, slash = text.find(":"), text.find("/")
    bracketed = re.match(r"^(?:([^@/:\[\]]*)@)?\[([^\]/]*)\]:(.*)$", text, re.DOTALL)
    if bracketed:
        user_text, host, path = bracketed.groups()
        if user_text is not None and not user_text:
            raise _fail(text, "empty user name before '@'")
        user = user_text
    elif colon >= 0 and (slash < 0 or colon < slash):
        user, host = _split_user(text, text[:colon])
        path = text[colon + 1 :]
    else:
        return Target.local(text)
    _check_host(text, host)
    if not path:
        raise _fail(text, "no path after 'host:'")
    return Target("ssh", user, host, None, path)


def _split_user(text: str, authority: str) -> tuple[str | None, str]:
    if "@" not in authority:
        return None, authority
    user, _, host = authority.rpartition("@")
    if not user:
        raise _fail(text, "empty user name before '@'")
    return user, host


def _check_host(text: str, host: str) -> None:
    if not host:
        raise _fail(text, "empty host")
    if host.startswith("-") or _BAD_HOST_CHARS.search(host):
        raise _fail(text, f"{host!r} is not a host name")


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _fail(text, f"port {port_text!r} is not a number from 1 to 65535")
    return int(port_text)

"""The daemon's configuration: one TOML file (examples/syncd.toml documents every key).

Loading is all-or-nothing: a file with any problem is refused as a whole, with a
message naming the file, the line when it can be found, the section and the key, so
that `syncd daemon` does not start and a SIGHUP keeps the old configuration running.
tomllib reports the line and column of syntax errors itself; for errors of meaning
(unknown key, bad target, bad window) the line is found by looking for the key in its
section's text, which works for the ordinary `[section]` / `key = value` layout.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from syncd.daemon.windows import Window, parse_window
from syncd.errors import SyncdError, UsageError
from syncd.sourceguard import refuse_inside_mirror
from syncd.transport.ratelimit import parse_rate
from syncd.transport.target import Target, parse_target
from syncd.units import parse_duration

DEFAULT_PATH = Path("/etc/syncd/syncd.toml")
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_T = TypeVar("_T")

SOURCE_KEYS = {"root", "state", "quiet", "recheck", "allow_subtree"}
RETRY_KEYS = {"first", "max"}
LOG_KEYS = {"format"}
SITE_KEYS = {
    "target",
    "bwlimit",
    "windows",
    "delete",
    "verify",
    "post_apply",
    "remote_syncd",
    "accept_new_host_key",
}
LOG_FORMATS = ("logfmt", "json")


class ConfigError(UsageError):
    """The configuration file cannot be used; the message names file, line and key."""


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str
    target: Target
    bwlimit: float | None = None  # bytes per second
    windows: tuple[Window, ...] = ()  # empty: always open
    delete: bool = True
    verify: bool = True  # ask the far side to check parity after each apply
    post_apply: str | None = None  # None: none; "": the far side's own; else proposed
    remote_syncd: str | None = None
    accept_new_host_key: bool = False


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    path: Path
    root: Path
    state: Path | None  # None: ROOT/.syncd
    quiet: float  # seconds without change before a rescan
    recheck: float  # seconds after a site's last success to push again anyway; 0: never
    retry_first: float
    retry_max: float
    log_format: str
    sites: tuple[SiteConfig, ...]

    def site(self, name: str) -> SiteConfig | None:
        return next((site for site in self.sites if site.name == name), None)


def load_config(path: Path) -> DaemonConfig:
    """Read and check `path`; raises ConfigError (one clear message) on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    return _Reader(path, text).config(data)


class _Reader:
    """Turns the parsed document into a DaemonConfig, naming where each problem is."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, section: str, key: str | None, problem: str) -> ConfigError:
        line = _locate(self.text, section, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        what = f"[{section}] {key}" if key else f"[{section}]"
        return ConfigError(f"{where}: {what}: {problem}")

    def config(self, data: dict[str, object]) -> DaemonConfig:
        for key in data:
            if key not in ("source", "retry", "log", "defaults", "sites"):
                raise self._unknown_section(key)
        source = self.table(data, "source", SOURCE_KEYS, required=True)
        retry = self.table(data, "retry", RETRY_KEYS)
        logs = self.table(data, "log", LOG_KEYS)
        root = self.path_value(source, "source", "root", required=True)
        assert root is not None
        if not root.is_dir():
            raise self.fail("source", "root", f"{root} is not a directory")
        if not self.value(source, "source", "allow_subtree", _bool, False):
            try:  # a typo here would wipe every site's cache (syncd/sourceguard.py)
                refuse_inside_mirror(root, flag="`allow_subtree = true` in [source]")
            except UsageError as exc:
                raise self.fail("source", "root", str(exc)) from None
        first = self.value(retry, "retry", "first", parse_duration, 30.0)
        log_format = self.value(logs, "log", "format", _log_format, "logfmt")
        return DaemonConfig(
            path=self.path,
            root=root,
            state=self.path_value(source, "source", "state"),
            quiet=self.value(source, "source", "quiet", parse_duration, 60.0),
            recheck=self.value(source, "source", "recheck", parse_duration, 86400.0),
            retry_first=max(first, 0.001),
            retry_max=max(self.value(retry, "retry", "max", parse_duration, 1800.0), first),
            log_format=log_format,
            sites=self.sites(data),
        )

    def _unknown_section(self, key: str) -> ConfigError:
        line = _locate(self.text, key, None) or _locate(self.text, "", key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(
            f"{where}: unknown section or key {key!r} (expected [source], [retry], [log], "
            "[defaults] and [sites.NAME])"
        )

    def table(
        self, data: dict[str, object], name: str, allowed: set[str], *, required: bool = False
    ) -> dict[str, object]:
        value = data.get(name)
        if value is None:
            if required:
                raise ConfigError(f"{self.path}: the [{name}] section is missing")
            return {}
        if not isinstance(value, dict):
            raise self.fail(name, None, "must be a table")
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.fail(name, key, f"unknown key (known keys: {known})")
        return value

    def value(
        self,
        table: dict[str, object],
        section: str,
        key: str,
        convert: Callable[[object], _T],
        default: _T,
    ) -> _T:
        if key not in table:
            return default
        try:
            return convert(table[key])
        except (ValueError, TypeError, SyncdError) as exc:
            raise self.fail(section, key, str(exc)) from None

    def path_value(
        self, table: dict[str, object], section: str, key: str, *, required: bool = False
    ) -> Path | None:
        if key not in table:
            if required:
                raise self.fail(section, None, f"{key!r} is required")
            return None
        value = table[key]
        if not isinstance(value, str) or not value.startswith("/"):
            raise self.fail(section, key, "must be an absolute path")
        return Path(value)

    def sites(self, data: dict[str, object]) -> tuple[SiteConfig, ...]:
        defaults = self.table(data, "defaults", SITE_KEYS - {"target"})
        sites = data.get("sites")
        if not isinstance(sites, dict) or not sites:
            raise ConfigError(
                f"{self.path}: no sites: add at least one [sites.NAME] section with a target"
            )
        return tuple(self.site(name, defaults, table) for name, table in sites.items())

    def site(self, name: str, defaults: dict[str, object], table: object) -> SiteConfig:
        section = f"sites.{name}"
        if not _SITE_NAME.match(name):
            raise self.fail(section, None, "a site name is 1-64 letters, digits, '_', '.' or '-'")
        if not isinstance(table, dict):
            raise self.fail(section, None, "must be a table")
        self.table({section: table}, section, SITE_KEYS)
        merged = {**defaults, **table}
        if "target" not in merged:
            raise self.fail(section, None, "'target' is required")
        site = SiteConfig(
            name=name,
            target=self.value(merged, section, "target", _target, Target.local("/")),
            bwlimit=self.value(merged, section, "bwlimit", _rate, None),
            windows=self.value(merged, section, "windows", _windows, ()),
            delete=self.value(merged, section, "delete", _bool, True),
            verify=self.value(merged, section, "verify", _bool, True),
            post_apply=self.value(merged, section, "post_apply", _post_apply, None),
            remote_syncd=self.value(merged, section, "remote_syncd", _command, None),
            accept_new_host_key=self.value(merged, section, "accept_new_host_key", _bool, False),
        )
        if site.post_apply is not None and not site.verify:
            raise self.fail(
                section, "post_apply", "needs verify = true: it runs only after parity holds"
            )
        return site


# -- value converters: raise ValueError (or UsageError) with the problem in words -------


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _log_format(value: object) -> str:
    if value not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}")
    return str(value)


def _target(value: object) -> Target:
    if not isinstance(value, str):
        raise TypeError("expected ssh://[user@]host[:port]/path, host:/path or /path")
    target = parse_target(value)
    if target.kind == "local" and not target.path.startswith("/"):
        raise ValueError(f"{value!r}: a local target must be an absolute path")
    return target


def _rate(value: object) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError('expected a rate such as "20M" (bytes per second)')
    return parse_rate(value)


def _windows(value: object) -> tuple[Window, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError('expected a list of "HH:MM-HH:MM" strings, e.g. ["22:00-06:00"]')
    return tuple(parse_window(item) for item in value)


def _post_apply(value: object) -> str | None:
    if value is True:
        return ""  # the far side's own command (serve --post-apply)
    if value is False:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a command line, or true for the far side's own command")
    return value


def _command(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError('expected a command line, e.g. "/opt/syncd/bin/syncd"')
    return value


def _locate(text: str, section: str, key: str | None) -> int | None:
    """The line of `key` in `[section]` (or of the header when key is None)."""
    header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    in_section = section == ""  # keys before the first header are top-level
    for number, line in enumerate(text.splitlines(), 1):
        match = header.match(line)
        if match:
            name = re.sub(r"[\s\"']", "", match.group(1))
            in_section = name == section
            if in_section and key is None:
                return number
        elif in_section and key and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return number
    return None

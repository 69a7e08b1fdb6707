"""A rate-limited link for benchmarks: a network namespace whose loopback is shaped by tbf.

`shaped_link(Tbf())` creates the namespace `syncd-bench-<pid>`, brings its `lo` up and
puts a token bucket filter on it (`tc qdisc add dev lo root tbf rate 100mbit ...`); it
yields a `ShapedLink` whose `prefix` (`ip netns exec NAME`) runs a command inside, and
deletes the namespace when the block ends (also on Ctrl-C). 127.0.0.1 inside is the
namespace's own loopback, so a server and its client both started with the prefix talk
only through the shaped `lo`.

Every packet on a loopback leaves through its one egress queue: both directions share
the rate (a half-duplex link). For a push, which is almost all one way, the difference
from a full-duplex link is the acknowledgements and the far side's replies.

Without root (or without `ip`, `tc` or the tbf qdisc) `shaped_link` raises `Unavailable`
with the tool's own message, before anything is left behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any


class Unavailable(RuntimeError):
    """The shaped link cannot be made here (not root, no `ip netns`, no tbf)."""


@dataclass(frozen=True, slots=True)
class Tbf:
    """tbf's parameters, as `tc` spells them.

    The bucket holds more than one packet: loopback's MTU is 65536, and a burst below a
    packet's size would hold every packet back. The queue takes `latency` worth of the
    rate (625 KB at 100 Mbit/s) before tbf drops, as a real link's queue does.
    """

    rate: str = "100mbit"
    burst: str = "128kb"  # tc: kb is kilobytes
    latency: str = "50ms"
    rate_bytes: int = 12_500_000  # `rate` in bytes per second, for the throughput check

    def args(self) -> list[str]:
        return ["tbf", "rate", self.rate, "burst", self.burst, "latency", self.latency]


@dataclass(frozen=True, slots=True)
class ShapedLink:
    name: str
    tbf: Tbf
    qdisc: str  # what `tc qdisc show dev lo` reports inside the namespace

    @property
    def prefix(self) -> tuple[str, ...]:
        """Prepend to a command's argv to run it inside the namespace."""
        return ("ip", "netns", "exec", self.name)

    def as_json(self) -> dict[str, Any]:
        command = ["tc", "qdisc", "add", "dev", "lo", "root", *self.tbf.args()]
        return {"namespace": self.name, "tc": " ".join(command), "qdisc": self.qdisc} | asdict(
            self.tbf
        )


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise Unavailable(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise Unavailable(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def shaped_link(tbf: Tbf) -> Iterator[ShapedLink]:
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root (`ip netns add`)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise Unavailable(f"`{tool}` (iproute2) is not installed")
    name = f"syncd-bench-{os.getpid()}"
    _run(["ip", "netns", "add", name])
    try:
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        _run(["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", *tbf.args()])
        qdisc = _run(["tc", "-n", name, "qdisc", "show", "dev", "lo"])
        yield ShapedLink(name, tbf, qdisc)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)

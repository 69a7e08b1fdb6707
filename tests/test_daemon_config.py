"""The daemon's configuration: what a good file gives, and how a bad one is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncd.daemon.config import ConfigError, load_config
from syncd.units import parse_duration
from tests.pushutil import syncd_env

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "syncd.toml"

GOOD = """\
[source]
root = "{root}"
quiet = "2m"

[defaults]
remote_syncd = "/opt/syncd/bin/syncd"

[sites.dc1]
target = "ssh://syncd@dc1.example/srv/mirror"
bwlimit = "20M"
windows = ["22:00-06:00", "12:00-13:00"]
delete = false
post_apply = "oc-mirror --from file:///srv/mirror docker://registry:5000"

[sites.lab]
target = "lab:/srv/mirror"
post_apply = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(text.format(root=tmp_path))
    return path


def test_a_good_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.root == tmp_path and config.quiet == 120.0
    dc1, lab = config.sites
    assert dc1.target.host == "dc1.example" and dc1.target.user == "syncd"
    assert dc1.bwlimit == 20e6 and [str(w) for w in dc1.windows] == ["22:00-06:00", "12:00-13:00"]
    assert dc1.delete is False and dc1.post_apply.startswith("oc-mirror")  # type: ignore[union-attr]
    assert lab.post_apply == "" and lab.delete is True and lab.verify is True
    assert dc1.remote_syncd == lab.remote_syncd == "/opt/syncd/bin/syncd"


def test_the_example_in_the_repository_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("/srv/oc-mirror", str(tmp_path))
    config = load_config(write(tmp_path, text.replace("{", "{{").replace("}", "}}")))
    assert config.sites


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('quiet = "2m"', 'quiet = "2m'), "line 3"),  # TOML syntax: line (and column)
        (('bwlimit = "20M"', 'bwlimt = "20M"'), ":10: [sites.dc1] bwlimt: unknown key"),
        (('target = "lab:/srv/mirror"', 'target = "ssh://lab"'), ":16: [sites.lab] target"),
        (('"12:00-13:00"', '"12:00-13:61"'), ":11: [sites.dc1] windows"),
        (('quiet = "2m"', 'quiet = "soon"'), ":3: [source] quiet"),
        (("[defaults]", "[default]"), ":5: unknown section or key 'default'"),
        (("delete = false", 'delete = "no"'), ":12: [sites.dc1] delete"),
        (("[sites.lab]", '[sites."lab one"]'), "[sites.lab one]: a site name"),
    ],
)
def test_bad_files_name_file_line_section_and_key(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message, message


def test_missing_pieces(tmp_path: Path) -> None:
    for text, expected in [
        ('[sites.a]\ntarget = "/x"\n', "[source] section is missing"),
        (f'[source]\nroot = "{tmp_path}"\n', "no sites"),
        (f'[source]\nroot = "{tmp_path}/nope"\n[sites.a]\ntarget="/x"\n', "not a directory"),
        (f'[source]\nroot = "{tmp_path}"\n[sites.a]\nbwlimit = "1M"\n', "'target' is required"),
        (
            f'[source]\nroot = "{tmp_path}"\n[sites.a]\ntarget = "/x"\nverify = false\n'
            "post_apply = true\n",
            "needs verify = true",
        ),
    ]:
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            load_config(path)


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25 and parse_duration(3) == 3.0 and parse_duration("0") == 0
    for bad in ("", "5x", "m5", -1, True, "1h 2"):
        with pytest.raises((ValueError, TypeError)):
            parse_duration(bad)


def test_the_daemon_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('"22:00-06:00"', '"22:00-30:00"'))
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "daemon", "--config", str(path)],
        capture_output=True,
        text=True,
        env=syncd_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"{path}:11: [sites.dc1] windows" in done.stderr
    assert "Traceback" not in done.stderr
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd",
            "daemon",
            "--config",
            str(write(tmp_path, GOOD)),
            "--check",
        ],
        capture_output=True,
        text=True,
        env=syncd_env(),
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr

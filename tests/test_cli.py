"""The command line: help everywhere, one-line errors, and the main data path end to end."""

import subprocess
import sys

import pytest

from streamlift.cli import build_parser, main


def _subcommands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _subcommands(sub, prefix + (name,))


def test_every_flag_has_help():
    for path, sub in _subcommands(build_parser()):
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"streamlift {' '.join(path)} {action.option_strings} has no help"


@pytest.mark.parametrize("args", [["--help"], ["data", "--help"], ["data", "views", "--help"],
                                  ["data", "info", "--help"]])
def test_help_runs(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0
    assert "usage: streamlift" in capsys.readouterr().out


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "streamlift", *args], capture_output=True,
                          text=True, timeout=120)


def test_errors_are_one_line(tmp_path):
    r = run_cli("data", "views", "--mocap", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "o.npz"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"streamlift: error: mocap file not found: {tmp_path / 'nope.npz'}"]
    r = run_cli("data", "info", str(tmp_path / "nope.npz"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("data", "views", "--cameras", "0", "--out", str(tmp_path / "o.npz"))
    assert r.returncode == 2 and "must be >= 1" in r.stderr


def test_views_on_the_shipped_sample(tmp_path):
    out = tmp_path / "views.npz"
    r = run_cli("data", "views", "--out", str(out), "--cameras", "2", "--noise-px", "3")
    assert r.returncode == 0, r.stderr
    assert "10 views (5 sequences x 2 cameras), 6,000 frames at 50 fps, noise 3 px" in r.stdout
    assert "views: 100%" in r.stderr  # progress shown
    r = run_cli("data", "info", str(out))
    assert r.returncode == 0 and "10 views, 6,000 frames" in r.stdout

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


def test_config_flags_are_the_dataclass_fields():
    """The parser reads the config fields from their source (so that --help needs no torch):
    what it reads must be what the dataclasses hold."""
    import dataclasses

    from streamlift.cli import common
    from streamlift.lifter.model import LifterConfig
    from streamlift.prior.model import SCHEDULES, PriorConfig
    from streamlift.serve.config import ServerConfig
    from streamlift.train.lifter import DEFAULT_WEIGHTS, TrainConfig
    from streamlift.train.prior import PriorTrainConfig
    from streamlift.viz.draw import SECOND_VIEWS
    from streamlift.windows import MODES

    for where, cls in ((common.LIFTER, LifterConfig), (common.TRAIN, TrainConfig),
                       (common.PRIOR, PriorConfig), (common.PRIOR_TRAIN, PriorTrainConfig),
                       (common.SERVER, ServerConfig)):
        real = {f.name: (f.default, dict(f.metadata)) for f in dataclasses.fields(cls)
                if f.metadata}
        assert common.fields(where) == real and real, where
        assert all(m.get("type") in (None, *common.TYPES) for _, m in real.values())
    assert common.fields(common.LIFTER)["mode"][1]["choices"] == MODES
    assert common.fields(common.PRIOR)["schedule"][1]["choices"] == SCHEDULES
    assert common.constant("streamlift.train.lifter:DEFAULT_WEIGHTS") == DEFAULT_WEIGHTS
    assert common.constant("streamlift.viz.draw:SECOND_VIEWS") == SECOND_VIEWS


def test_command_help_imports_neither_torch_nor_zmq():
    code = ("import sys\nfrom streamlift.cli import main\n"
            "for c in ('train', 'eval', 'serve', 'demo', 'train-prior', 'render', 'data views'):\n"
            "    try:\n        main([*c.split(), '--help'])\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, 'zmq' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False False"


def test_flag_errors_are_one_line(tmp_path):
    r = run_cli("data", "views", "--split", "val", "--out", str(tmp_path / "o.npz"))
    assert r.returncode == 2
    assert r.stderr.strip() == ("streamlift: error: --split needs --splits (the splits.json "
                                "that defines it)")
    r = run_cli("train-prior", "--mocap", "x.npz", "--splits", "s.json", "--out", "p.pt",
                "--ema", "1.5")
    assert r.returncode == 2 and "argument --ema: must be in [0, 1), got 1.5" in r.stderr

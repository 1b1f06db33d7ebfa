import subprocess
import sys

import pytest

from pcseg.cli import HANDLERS, build_parser, main


def test_top_level_help():
    out = subprocess.run([sys.executable, "-m", "pcseg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in HANDLERS:
        assert command in out.stdout


@pytest.mark.parametrize("command", sorted(HANDLERS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: pcseg " + command in capsys.readouterr().out


def test_unknown_subcommand_fails():
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["frobnicate"])
    assert exit_.value.code == 2

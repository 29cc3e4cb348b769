"""Every command's --help: exits 0 without a GPU or a server, explains every option, shows its exit codes."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

SCRIPTS = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_help_explains_every_option(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    module = importlib.import_module(SCRIPTS[command].split(":")[0])
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {command} ")
    for action in module.build_parser()._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help text"
        assert all(flag in text for flag in action.option_strings)
    assert "(default: None)" not in text
    if command not in ("simvos-segment", "simvos-serve"):  # these two exit 0 or 2 (130 interrupted) only
        assert "\nExit codes: 0 " in text


def test_examples_keep_their_lines(capsys, monkeypatch):
    """Indented examples in a docstring are printed as written, prose is reflowed to the terminal."""
    from simvos_trt.cli import build

    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        build.main(["--help"])
    text = capsys.readouterr().out
    assert "\n    simvos-build engines/BS-480x864 --library tensorrt_rtx --compute-capability 8.0 8.6\n" in text
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("    simvos-build"))

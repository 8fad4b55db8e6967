"""`-p` means a notebook parameter for `run`/`sweep` and the port for `serve`/`guard`: each command
parses its own `-p` (the pair joining for `-p NAME VALUE` used to rewrite every command's argv)."""

from __future__ import annotations

import pytest
from conftest import run_cli_in_process

import workbench.cli.commands  # noqa: F401  (registers the commands, as main() does)
from workbench.cli.app import join_param_pairs

JOINED = [
    ("run nb.ipynb -p lr 0.1 -p depth=3", "run nb.ipynb -p lr=0.1 -p depth=3"),
    ("--home x sweep nb.ipynb --param lr 0.1", "--home x sweep nb.ipynb --param lr=0.1"),
    ("serve wine@production -p 8000 --token-file t", "serve wine@production -p 8000 --token-file t"),
    ("guard wine@production -p 8000 --max-error-rate 0.1", "guard wine@production -p 8000 --max-error-rate 0.1"),
]


@pytest.mark.parametrize(("argv", "expected"), JOINED)
def test_pairs_are_joined_only_for_commands_whose_p_is_a_parameter(argv, expected):
    assert join_param_pairs(argv.split()) == expected.split()


@pytest.mark.parametrize("command", ["serve", "guard"])
def test_serve_and_guard_take_p_as_the_port(ws, capsys, command):
    proc = run_cli_in_process(capsys, command, "nosuch@production", "-p", "8123", "--token-file", "/nonexistent")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Invalid value for '--port'" not in output, output

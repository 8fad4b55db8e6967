"""The CI examples in docs/ (GitHub Actions, GitLab CI, Jenkins) use commands that exist.

Every `workbench ...` command line in them is parsed by the CLI's own click commands (the
subcommand path, every option and its value type, the arguments): a renamed command or option
fails here instead of in a reader's CI. The YAML files are read with yaml.safe_load (their `run`
and `script` entries); the Jenkinsfile is Groovy, so its `sh '...'` steps are found with a regex.
The GitLab example's training job also runs for real, as its shell would, in a copy of this
repository's data, rules, notebooks and workbench.yaml: the data is validated, the pipeline trains,
gates, promotes and writes the JUnit report the job uploads, and the model card is published.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
GITHUB, GITLAB, JENKINS = (DOCS / "github-actions-example.yml", DOCS / "gitlab-ci-example.yml",
                           DOCS / "Jenkinsfile.example")  # fmt: skip
SCRIPT_KEYS = {"run", "script", "before_script", "after_script"}  # GitHub steps' run, GitLab jobs' scripts
SHELL_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "time", "!", "{", "("}
OPERATORS = {";", "&", "&&", "|", "||", "(", ")", ">", ">>", "<", "<<", "<&", ">&", "|&", ";;"}
# A Jenkinsfile's shell steps: sh followed by a Groovy string in any of its four quotings.
JENKINS_SH = re.compile(r"""\bsh\s*\(?\s*(?:'''(.*?)'''|\"\"\"(.*?)\"\"\"|"""
                        r"""'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)")""", re.DOTALL)  # fmt: skip


def yaml_scripts(path: Path) -> list[str]:
    """Every shell script of a GitHub workflow or GitLab pipeline (a string or list under a script key)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in SCRIPT_KEYS:
                    found.extend([value] if isinstance(value, str) else value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(path.read_text()))
    assert found and all(isinstance(script, str) for script in found), path
    return found


def jenkins_scripts(path: Path) -> list[str]:
    found = ["".join(groups) for groups in JENKINS_SH.findall(path.read_text())]
    assert found, path
    return found


def workbench_commands(script: str) -> list[list[str]]:
    """The argument lists of the `workbench` commands in a shell script, one simple command at a time."""
    script = re.sub(r"\$\{\{.*?\}\}", "X", script.replace("\\\n", " "))  # GitHub's ${{ expressions }}
    commands = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split, lexer.commenters = True, "#"
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token not in OPERATORS:
                words.append(token)
                continue
            while words and (words[0] in SHELL_KEYWORDS or re.fullmatch(r"\w+=\S*", words[0])):
                words.pop(0)  # `then workbench ...`, `VAR=value workbench ...`
            if words and Path(words[0]).name == "workbench":
                commands.append(words[1:])
            words = []
    return commands


def check_command(args: list[str]) -> str:
    """Parse `workbench ARGS` with the CLI's click commands; returns the command path, or fails."""
    import typer.main

    from workbench.cli import commands  # noqa: F401  (registers every command)
    from workbench.cli.app import app, join_param_pairs

    command: Any = typer.main.get_command(app)  # typer may carry its own click: duck-typed
    rest, path = join_param_pairs(args), ["workbench"]
    while hasattr(command, "commands") and rest:
        if rest[0].startswith("-"):  # a group's own option (--home PATH)
            option = next((p for p in command.params if rest[0] in p.opts), None)
            assert option is not None, f"{' '.join(path)} has no option {rest[0]}"
            rest = rest[1:] if option.is_flag else rest[2:]
            continue
        name, rest = rest[0], rest[1:]
        assert name in command.commands, f"{' '.join(path)} has no command {name!r} (has: {sorted(command.commands)})"
        command, path = command.commands[name], [*path, name]
    try:
        command.make_context(" ".join(path), list(rest))
    except Exception as exc:  # a click UsageError (unknown option, bad value, missing argument)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise AssertionError(f"`workbench {shlex.join(args)}`: {message}") from exc
    return " ".join(path[1:])


def test_the_shell_parsing_finds_each_command():
    found = workbench_commands(
        'best=$(workbench runs list --json | jq .)  # a comment\n'
        'if [ -n "$ref" ]; then WB=1 workbench models card "$ref" --html c.html; fi && .venv/bin/workbench init\n'
        "workbench sweep a.ipynb --experiment ci-${{ github.run_number }} --json > sweep.json"
    )  # fmt: skip
    assert found == [["runs", "list", "--json"], ["models", "card", "$ref", "--html", "c.html"], ["init"],
                     ["sweep", "a.ipynb", "--experiment", "ci-X", "--json"]]  # fmt: skip
    with pytest.raises(AssertionError, match="No such option: --junitt"):
        check_command(["pipeline", "run", "x", "--junitt", "r.xml"])
    with pytest.raises(AssertionError, match="has no command 'runn'"):
        check_command(["pipeline", "runn", "x"])
    with pytest.raises(AssertionError, match="Invalid value for '--parallel'"):
        check_command(["sweep", "a.ipynb", "--parallel", "many"])


@pytest.mark.parametrize("path", [GITHUB, GITLAB, JENKINS], ids=lambda p: p.name)
def test_every_workbench_command_of_the_ci_examples_exists(path, monkeypatch):
    monkeypatch.chdir(REPO)  # the examples' paths are this repository's
    scripts = jenkins_scripts(path) if path.suffix == ".example" else yaml_scripts(path)
    used = [check_command(args) for script in scripts for args in workbench_commands(script)]
    assert "init" in used and "snapshot add" in used and "models card" in used, used
    if path != GITHUB:  # the GitHub example sweeps and promotes by hand; these run the declared pipeline
        assert {"models gate", "pipeline validate", "pipeline run"} <= set(used), used


def test_the_junit_reports_written_are_the_ones_uploaded():
    """A report the CI system does not collect is invisible: the --junit paths match the upload globs."""
    written = {path: {args[args.index("--junit") + 1] for script in (jenkins_scripts(path) if path == JENKINS
                                                                       else yaml_scripts(path))
                      for args in workbench_commands(script) if "--junit" in args}
               for path in (GITLAB, JENKINS)}  # fmt: skip
    jobs = yaml.safe_load(GITLAB.read_text())
    uploaded = {job["artifacts"]["reports"]["junit"] for job in jobs.values()
                if isinstance(job, dict) and "reports" in job.get("artifacts", {})}  # fmt: skip
    assert written[GITLAB] == {"reports/pipeline.xml"} and written[GITLAB] <= uploaded
    assert all(job["artifacts"]["when"] == "always" for job in jobs.values() if isinstance(job, dict)
               and "artifacts" in job)  # fmt: skip  # a failed pipeline's report is the one that matters
    (glob,) = re.findall(r"junit testResults: '([^']+)'", JENKINS.read_text())
    assert written[JENKINS] == {"reports/pipeline.xml"} and all(Path(p).match(glob) for p in written[JENKINS])
    assert re.search(r"post \{\s*always \{\s*junit ", JENKINS.read_text())


@pytest.mark.slow
def test_the_gitlab_training_job_runs(tmp_path):
    """The `retrain` job's script as GitLab's shell runs it (each line must succeed), minus the
    package installation: .venv/bin is first on PATH instead."""
    for name in ("data", "notebooks"):
        shutil.copytree(REPO / name, tmp_path / name)
    for name in ("rules.yaml", "workbench.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    pipeline = yaml.safe_load(GITLAB.read_text())
    job = pipeline["retrain"]
    lines = [line for line in [*pipeline["default"]["before_script"], *job["script"]]
             if not line.startswith("pip install")]  # fmt: skip
    env = {**os.environ, "CI_PROJECT_DIR": str(tmp_path), "CI_COMMIT_REF_SLUG": "main", "HOME": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    env.update({key: os.path.expandvars(value.replace("$CI_PROJECT_DIR", str(tmp_path)))
                for key, value in pipeline["variables"].items()})  # fmt: skip
    script = "set -eo pipefail\n" + "\n".join(lines)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    result = json.loads((tmp_path / "pipeline.json").read_text())
    assert result["status"] == "finished" and result["promoted"]["alias"] == "production", result
    root = ET.parse(tmp_path / job["artifacts"]["reports"]["junit"]).getroot()
    cases = [(c.get("name"), [child.tag for child in c]) for c in root.iter("testcase")]
    assert cases == [("02_train", []), ("promote wine-classifier@production", [])], cases
    assert f"wine-classifier@{result['promoted']['version']}" in (tmp_path / "model-card.html").read_text()
    assert (tmp_path / ".workbench").is_dir()  # WORKBENCH_HOME as the job sets it: the folder GitLab caches

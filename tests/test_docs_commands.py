"""Every command block in README.md and docs/*.md runs as written, on a fresh checkout.

A reader copies the first command of the README and expects it to work; documentation that
drifts from the code fails here instead. For each file, its ```bash / ```sh / ```console blocks run
in order, one command at a time, in a temporary folder holding copies of what the README expects
(`data/`, `rules.yaml`, `notebooks/`, `workbench.yaml`), with a fresh workspace, `.venv/bin` first
on PATH and HOME in the temporary folder. The README's ```python blocks then run as one script in
the same folder. What cannot run here is in SKIP with the reason; servers start in the background
and the commands after them (curl) talk to them; placeholders get real values (`Placeholders`).
A doc page that continues the README's story starts from the state it assumes (`SETUP`): the same
commands, each state that several pages start from built once per session and copied (`SetupCache`).

Also here: `workbench demo` (the README's `make demo`) writes only into its workspace.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
COPIED = ["data", "rules.yaml", "notebooks", "workbench.yaml"]  # what the README's commands read
COMMAND_TIMEOUT = 600

# Commands that cannot run in a test, keyed by their first words ("$" at the end: the whole
# command), with the reason. Reviewed: test_skip_list_is_current fails on an entry no doc uses.
SKIP: dict[str, str] = {
    "make demo": "runs the whole demo for minutes; test_demo_writes_only_into_the_workspace runs it",
    "make test": "the whole test suite, which includes this test",
    "make screenshots": "drives a lab in Chromium for minutes; tests/test_screenshots.py checks its pictures are shown",
    "source .venv/bin/activate": "the test puts .venv/bin first on PATH instead (its temp folder has no .venv)",
    "workbench watch $": "blocks until Ctrl+C; `workbench watch --once` (docs/governance.md) runs the same check",
    "workbench watch --interval": "blocks until Ctrl+C; `workbench watch --once` runs the same check",
    "cd extension": "rebuilds the JupyterLab front end with node and jlpm (network, minutes); make setup does it",
    ".venv/bin/pytest": "runs part of the test suite (tests/security, tests/reliability), which make test runs",
    "workbench sweep notebooks/02_train.ipynb --grid learning_rate=0.03,0.1 --executor dask":
        "needs a Dask cluster at tcp://scheduler:8786; the Dask executor is tested in tests/test_sweeps.py",
    "workbench run train.ipynb": "train.ipynb stands for a notebook of yours that reads no snapshot (docs/team.md's "
        "server holds its workspace open); tests/test_team_runs.py runs one against a server",
    "workbench sweep train.ipynb": "train.ipynb stands for a notebook of yours; tests/test_team_runs.py sweeps one "
        "against a server on a Dask cluster whose workers have no workspace folder",
    "dask scheduler": "serves a Dask scheduler until stopped; tests/test_team_runs.py starts one on loopback",
    "dask worker": "serves as a Dask worker until stopped; tests/test_team_runs.py starts them in an empty folder",
    "workbench server --host 0.0.0.0":
        "serves HTTPS with a certificate of your own on every interface; tests/test_team_server.py starts it with TLS",
    "workbench server backup /srv/backups/workbench-2026-12-01 --home":
        "needs the server stopped, and /srv; tests/test_team_backup.py backs up a stopped workspace with --home",
    "workbench serve wine-classifier@production --port 8001 $":
        "docs/team.md's server has no model (models are promoted on the server's machine); "
        "tests/test_team_serve.py serves one from a server",
}  # fmt: skip

# Commands that serve until stopped: started in the background, ready once GET /health answers
# on their port, stopped when another server takes the same port or the file is done.
BACKGROUND: dict[str, str] = {
    "workbench serve": "serves until Ctrl+C",
    "workbench guard": "serves (and guards) until Ctrl+C",
    "workbench server --port": "serves the workspace to a team until Ctrl+C",
}
DEFAULT_PORT = 8000  # of serve and guard

# ```python blocks: the README's run as one script per file; these are skipped (by first line).
PYTHON_FILES = {"README.md"}
PYTHON_SKIP: dict[str, str] = {
    "wb.log_metric(": "runs inside a notebook (its epoch, model, X); notebooks/02_train.ipynb does this and runs above",
}

# The state a page assumes, built before its commands: the README's Quickstart data, a sweep in
# `wine-sweep`, and for the registry pages the README's two promotions of wine-classifier.
QUICKSTART = [
    "workbench init",
    "workbench snapshot add wine data/wine.csv",
    "workbench snapshot add wine data/wine-2.csv",
]
SWEEP = "workbench sweep notebooks/02_train.ipynb --parallel 2 --experiment wine-sweep -p n_estimators 30 --grid "
PROMOTE_A = "workbench promote RUN_A --model wine-classifier --alias production"
PROMOTE_B = "workbench promote RUN_B --model wine-classifier --alias production"
SETUP: dict[str, list[str]] = {
    "docs/compare.md": [*QUICKSTART, SWEEP + "learning_rate=0.05,0.1,0.3"],  # RUN_A, RUN_B, RUN_C
    "docs/runs.md": QUICKSTART,
    "docs/models.md": [
        *QUICKSTART,
        SWEEP + "learning_rate=0.05,0.1,0.3",
        PROMOTE_A,
        PROMOTE_B,  # RUN_ID (the best): a third run
        "(umask 077; echo s3cret > ~/.wb-token)",
    ],
    "docs/governance.md": [*QUICKSTART, SWEEP + "learning_rate=0.05,0.3", PROMOTE_A],
    "docs/team.md": QUICKSTART,
    "docs/monitoring.md": [*QUICKSTART, SWEEP + "learning_rate=0.05,0.3", PROMOTE_A, PROMOTE_B],  # versions 1, 2
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a doc file."""

    path: Path
    line: int  # of the opening fence
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def doc_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order, with their language."""
    found, lang, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = re.match(r"^```\s*([\w+-]*)\s*$", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1).lower(), number, []
        elif line.startswith("```") and lang is not None:
            found.append(Block(path, start, lang, "\n".join(lines)))
            lang = None
        elif lang is not None:
            lines.append(line)
    return found


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a '#' outside quotes, after a space)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def block_commands(block: Block) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped.

    In a ```console block only lines starting with `$ ` are commands (the rest is their output).
    """
    raw = block.text.splitlines()
    if block.lang == "console":
        raw = [line[2:] for line in raw if line.startswith("$ ")]
    commands, pending = [], ""
    for line in raw:
        line = line.lstrip() if pending else line
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
            continue
        command = strip_comment(pending + line)
        pending = ""
        if command.strip():
            commands.append(command.strip())
    return commands


def leading_words(command: str) -> list[str]:
    """The command's words, without leading VAR=value assignments."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
        words.pop(0)
    return words


def matches(command: str, key: str) -> bool:
    """Whether the command starts with the key's words ("$" at the key's end: and nothing else)."""
    words, wanted = leading_words(command), key.split()
    exact = wanted[-1] == "$"
    wanted = wanted[:-1] if exact else wanted
    return words[: len(wanted)] == wanted and (not exact or len(words) == len(wanted))


def skip_reason(command: str) -> str | None:
    return next((reason for key, reason in SKIP.items() if matches(command, key)), None)


def is_background(command: str) -> bool:
    return any(matches(command, key) for key in BACKGROUND)


def shell_blocks(path: Path) -> list[Block]:
    return [b for b in doc_blocks(path) if b.lang in SHELL_LANGS]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Placeholders:
    """Real values for the docs' placeholders, looked up when a command needs them.

    | in the docs | becomes |
    | --- | --- |
    | `RUN_ID` | the finished run with the lowest metrics.log_loss (the one you would promote); |
    |  | in `workbench cancel RUN_ID`: the newest run, of any status (the one just started) |
    | `RUN_A`, `RUN_B`, `RUN_C` | finished runs with different log losses, worst first (so B beats A) |
    | `{...}` in a request body | the first row of data/wine-2.csv, without `sample_id` and `target` |
    | port N (`--port N`, `localhost:N`) | a free port, the same one for every N in a file; a server |
    |  | command without --port gets the one for 8000 (its default) |
    """

    env: dict[str, str]
    cwd: Path
    ports: dict[int, int] = field(default_factory=dict)

    def port(self, documented: int) -> int:
        return self.ports.setdefault(documented, free_port())

    def runs(self) -> tuple[str, list[str]]:
        """(best run id, run ids with distinct log losses, worst first) from `runs list --json`."""
        argv = [str(VENV_BIN / "workbench"), "runs", "list", "--json", "--status", "finished", "-n", "0"]
        proc = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"workbench runs list --json failed:\n{proc.stderr}"
        scored = [r for r in json.loads(proc.stdout) if r.get("metrics.log_loss") is not None]
        assert scored, "a placeholder needs a finished run with metrics.log_loss, and there is none yet"
        scored.sort(key=lambda r: r["metrics.log_loss"], reverse=True)
        distinct: dict[float, str] = {}
        for row in scored:
            distinct.setdefault(round(row["metrics.log_loss"], 9), row["run_id"])
        return scored[-1]["run_id"], list(distinct.values())

    def newest(self) -> str:
        argv = [str(VENV_BIN / "workbench"), "runs", "list", "--json", "-n", "1"]
        proc = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and json.loads(proc.stdout), f"no run to stand for RUN_ID:\n{proc.stderr}"
        return json.loads(proc.stdout)[0]["run_id"]

    def record(self) -> str:
        import pandas as pd

        row = pd.read_csv(self.cwd / "data" / "wine-2.csv").drop(columns=["sample_id", "target"]).iloc[0]
        return json.dumps({k: float(v) for k, v in row.items()})

    def apply(self, command: str) -> str:
        """The command with every placeholder replaced."""
        if matches(command, "workbench cancel"):
            command = re.sub(r"\bRUN_ID\b", self.newest(), command)
        if re.search(r"\bRUN_(ID|[ABC])\b", command):
            best, worst_first = self.runs()
            command = re.sub(r"\bRUN_ID\b", best, command)
            for index, letter in enumerate("ABC"):
                if re.search(rf"\bRUN_{letter}\b", command):
                    assert index < len(worst_first), f"RUN_{letter} needs {index + 1} runs with distinct log losses"
                    command = re.sub(rf"\bRUN_{letter}\b", worst_first[index], command)
        command = command.replace("{...}", self.record())
        command = re.sub(r"(?<=--port )\d+|(?<=localhost:)\d+|(?<=127\.0\.0\.1:)\d+",
                         lambda m: str(self.port(int(m.group()))), command)  # fmt: skip
        if is_background(command) and "--port" not in command:
            command += f" --port {self.port(DEFAULT_PORT)}"
        return command


def served_port(command: str) -> int:
    return int(re.search(r"--port (\d+)", command).group(1))


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl+C, as a reader stops it
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@dataclass
class DocRunner:
    """Runs one doc file's commands in its own folder and workspace, failing with the context."""

    folder: Path
    env: dict[str, str]
    placeholders: Placeholders
    servers: list[Server] = field(default_factory=list)
    timings: list[tuple[float, str]] = field(default_factory=list)  # printed by the test (pytest -s)

    def fail(self, where: str, command: str, message: str) -> None:
        pytest.fail(f"{where}: `{command}` {message}", pytrace=False)

    def run(self, where: str, documented: str) -> None:
        start = time.monotonic()
        try:
            self.run_one(where, documented)
        finally:
            self.timings.append((time.monotonic() - start, documented))

    def run_one(self, where: str, documented: str) -> None:
        command = self.placeholders.apply(documented)
        if is_background(command):
            return self.start_server(where, command)
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT)  # fmt: skip
        if proc.returncode != 0:
            shown = f"`{documented}` ran as `{command}`" if command != documented else ""
            self.fail(where, documented, f"exited {proc.returncode}. {shown}\n--- stdout ---\n{proc.stdout[-4000:]}"
                                         f"\n--- stderr ---\n{proc.stderr[-4000:]}")  # fmt: skip

    def start_server(self, where: str, command: str) -> None:
        port = served_port(command)
        for server in [s for s in self.servers if s.port == port]:
            server.stop()
            self.servers.remove(server)
        log = self.folder / f"server-{len(self.servers)}-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(["bash", "-c", command], cwd=self.folder, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # fmt: skip
        self.servers.append(Server(proc, port, log))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.fail(where, command, f"exited {proc.returncode} instead of serving:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.fail(where, command, f"did not answer /health within 120 s:\n{log.read_text()[-4000:]}")

    def run_python(self, blocks: list[Block]) -> None:
        script = "\n\n".join(f"# {b.where}\n{b.text}" for b in blocks)
        # With -c, as pasted into a REPL or notebook: a script file would be re-imported by the
        # sweep's worker processes (multiprocessing spawn), which a reader's session never is.
        start = time.monotonic()
        proc = subprocess.run([str(VENV_BIN / "python"), "-c", script], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT)  # fmt: skip
        self.timings.append((time.monotonic() - start, "python -c <the blocks>"))
        if proc.returncode != 0:
            output = proc.stdout[-3000:] + proc.stderr[-5000:]
            where = ", ".join(b.where for b in blocks)
            self.fail(where, "python -c <the blocks>", f"exited {proc.returncode}:\n{script}\n--- output ---\n{output}")

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()


def doc_env(folder: Path, home: Path) -> dict[str, str]:
    """A reader's shell after `source .venv/bin/activate`, with a workspace and HOME of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", WORKBENCH_HOME=str(folder / ".workbench"),
               HOME=str(home), COLUMNS="100", NO_COLOR="1", PYTHONUNBUFFERED="1")  # fmt: skip
    return env


def fresh_checkout(place: Path) -> None:
    """`place`/checkout with copies of what the README expects, and an empty `place`/home."""
    folder, home = place / "checkout", place / "home"
    folder.mkdir(parents=True)
    home.mkdir()
    for name in COPIED:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / name)


@contextmanager
def doc_runner(place: Path) -> Iterator[DocRunner]:
    """A runner in `place`/checkout (HOME: `place`/home), which must exist (`fresh_checkout`, `SetupCache`)."""
    folder, home = place / "checkout", place / "home"
    env = doc_env(folder, home)
    runner = DocRunner(folder, env, Placeholders(env, folder))
    try:
        yield runner
    finally:
        runner.stop_servers()


def copy_state(source: Path, target: Path) -> None:
    """`source`'s tree at `target`, files with their times; sockets and pipes (a kernel's) are not state."""

    def special(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if not (os.path.isdir(p := os.path.join(folder, n)) or os.path.isfile(p)
                                         or os.path.islink(p))}  # fmt: skip

    shutil.copytree(source, target, symlinks=True, ignore=special)


def shared_prefixes(setups: list[list[str]]) -> set[tuple[str, ...]]:
    """The states worth keeping: the longest command prefixes that more than one SETUP starts with
    (where a setup ends, or where setups part)."""
    counts: dict[tuple[str, ...], int] = {}
    for commands in setups:
        for end in range(1, len(commands) + 1):
            counts[tuple(commands[:end])] = counts.get(tuple(commands[:end]), 0) + 1
    kept = set()
    for commands in setups:
        for end in range(1, len(commands) + 1):
            prefix = tuple(commands[:end])
            if counts[prefix] > 1 and (end == len(commands) or counts[tuple(commands[: end + 1])] < counts[prefix]):
                kept.add(prefix)
    return kept


@dataclass
class SetupCache:
    """The states several pages' SETUP share (the Quickstart, a sweep, a promotion), each built once.

    A page's setup commands run as before, in order, but from the longest shared state already built:
    a copy of the folder (checkout and HOME) as it was after those commands. Every page with a SETUP runs
    in the same folder, `place`, so the absolute paths a workspace records (its notebooks, snapshot
    sources, run folders) are the same as if the page had built its state itself; after the page, its
    folder moves to the test's tmp_path. A state is kept only between commands, when no server of the
    page runs (a setup starts none: `keep` checks)."""

    place: Path
    store: Path
    worth_keeping: set[tuple[str, ...]]
    states: dict[tuple[str, ...], Path] = field(default_factory=dict)

    def restore(self, setup: list[str]) -> int:
        """`place` holding the longest kept state `setup` starts with (else a fresh checkout): how many of
        its commands that state has run."""
        shutil.rmtree(self.place, ignore_errors=True)
        done = max((n for n in range(len(setup) + 1) if tuple(setup[:n]) in self.states), default=0)
        if done == 0:
            fresh_checkout(self.place)
        else:
            copy_state(self.states[tuple(setup[:done])], self.place)
        return done

    def keep(self, prefix: list[str], runner: DocRunner) -> None:
        """Keep `place` as the state after `prefix`, if other pages start from it too."""
        key = tuple(prefix)
        if key in self.worth_keeping and key not in self.states:
            assert not runner.servers, f"a SETUP command left a server running: {runner.servers}"
            self.states[key] = self.store / f"state-{len(self.states)}"
            copy_state(self.place, self.states[key])

    def hand_over(self, tmp_path: Path) -> None:
        """The page's folder (checkout and home) into its tmp_path, as if it had run there; `place` freed."""
        for name in ("checkout", "home"):
            if (self.place / name).exists():
                shutil.move(self.place / name, tmp_path / name)
        shutil.rmtree(self.place, ignore_errors=True)


@pytest.fixture(scope="session")
def setup_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SetupCache]:
    root = tmp_path_factory.mktemp("doc-setups")
    yield SetupCache(root / "page", root / "states", shared_prefixes(list(SETUP.values())))
    shutil.rmtree(root, ignore_errors=True)


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


# ---------------------------------------------------------------------------------- fast checks


def test_skip_list_is_current():
    """Every skip entry still matches a doc command, and no doc command is a usage synopsis."""
    commands = [(b.where, c) for path in DOC_FILES for b in shell_blocks(path) for c in block_commands(b)]
    assert commands, "no shell blocks found in the docs"
    for key in [*SKIP, *BACKGROUND]:
        assert any(matches(c, key) for _, c in commands), f"SKIP/BACKGROUND entry {key!r} matches no doc command"
    synopses = [(where, c) for where, c in commands if re.search(r"\s\[--?\w", c)]
    assert not synopses, f"write real commands, not '[--option]' synopses: {synopses}"
    unknown = [(where, c) for where, c in commands if set(PLACEHOLDER.findall(strip_env(c))) - KNOWN_PLACEHOLDERS]
    assert not unknown, f"a placeholder that Placeholders does not fill: {unknown}"


PLACEHOLDER = re.compile(r"\b(?:[A-Z]+_[A-Z_]+|NAME|PATH|FILE|VERSION|TOKEN|HOST|QUERY)\b")
KNOWN_PLACEHOLDERS = {"RUN_ID", "RUN_A", "RUN_B", "RUN_C"}


def strip_env(command: str) -> str:
    """Without VAR=value assignments and $VARIABLES, which are not placeholders."""
    return re.sub(r"\$\w+|\b[A-Z_]+=\S*", "", command)


def test_block_parsing():
    block = Block(REPO / "README.md", 1, "bash", "a --x 'q # not a comment' \\\n    --y 1   # comment\n\n# only\nb")
    assert block_commands(block) == ["a --x 'q # not a comment' --y 1", "b"]
    console = Block(REPO / "README.md", 1, "console", "$ workbench init\nWorkspace ready")
    assert block_commands(console) == ["workbench init"]
    assert matches("workbench watch", "workbench watch $")
    assert not matches("workbench watch --once", "workbench watch $")
    assert matches("WORKBENCH_SERVE_TOKEN=x workbench serve m@2", "workbench serve")


def test_placeholders_map_ports_and_records(tmp_path):
    shutil.copytree(REPO / "data", tmp_path / "data")
    values = Placeholders({}, tmp_path)
    served = values.apply("workbench serve m@production --canary 3=0.1")
    assert served.endswith(f"--port {values.port(8000)}")
    curl = values.apply("curl -s localhost:8000/predict -d '{\"records\": [{...}]}'")
    assert f"localhost:{values.port(8000)}/" in curl and '"alcohol": 14.23' in curl and "sample_id" not in curl


def test_shipped_wine_csvs_are_what_make_wine_writes():
    """data/*.csv are generated, not edited: data/make_wine.py rebuilds them byte for byte."""
    sys.path.insert(0, str(REPO / "data"))
    try:
        import make_wine
    finally:
        sys.path.remove(str(REPO / "data"))
    first, second = make_wine.deliveries()
    assert make_wine.FIRST.read_text() == make_wine.csv_text(first)
    assert make_wine.SECOND.read_text() == make_wine.csv_text(second)


def test_demo_passes_the_report_folder_only_to_notebooks_that_take_it(tmp_path):
    from workbench.demo import demo_notebooks, demo_parameters

    given = {nb.name: demo_parameters(nb, tmp_path / "reports") for nb in demo_notebooks()}
    assert given["03_sweep_and_compare.ipynb"] == {"report_dir": str(tmp_path / "reports")}
    assert all(params == {} for name, params in given.items() if name != "03_sweep_and_compare.ipynb")


# ---------------------------------------------------------------------------------- the docs, run


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("doc", DOC_FILES, ids=relative)
def test_doc_commands_run_as_written(doc: Path, tmp_path: Path, setup_cache: SetupCache):
    blocks = doc_blocks(doc)
    shell = [b for b in blocks if b.lang in SHELL_LANGS]
    python = [b for b in blocks if b.lang == "python" and doc.name in PYTHON_FILES
              and not any(b.text.lstrip().startswith(key) for key in PYTHON_SKIP)]  # fmt: skip
    runnable = [(b, c) for b in shell for c in block_commands(b) if not skip_reason(c)]
    if not runnable and not python:
        pytest.skip(f"{relative(doc)} has no command that can run here")
    setup = SETUP.get(relative(doc), [])
    place, restored = (setup_cache.place, setup_cache.restore(setup)) if setup else (tmp_path, 0)
    if not setup:
        fresh_checkout(tmp_path)
    try:
        with doc_runner(place) as runner:
            for index, command in enumerate(setup[restored:], start=restored + 1):
                runner.run(f"{relative(doc)} (setup: the state the page assumes)", command)
                setup_cache.keep(setup[:index], runner)
            for block, command in runnable:
                runner.run(block.where, command)
            runner.stop_servers()
            if python:
                runner.run_python(python)
    finally:
        if setup:
            setup_cache.hand_over(tmp_path)
    slowest = sorted(runner.timings, reverse=True)[:8]
    kept = f" ({restored} of {len(setup)} setup commands done by an earlier page)" if setup else ""
    print(f"\n{relative(doc)}: {sum(t for t, _ in runner.timings):.0f} s in commands{kept}; slowest:")
    print("\n".join(f"{seconds:6.1f} s  {command}" for seconds, command in slowest))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_writes_only_into_the_workspace(tmp_path: Path):
    """`workbench demo` (the README's `make demo`) leaves the checkout as it was; the report is in the workspace."""
    before = {p.name: p.stat().st_mtime_ns for p in (REPO / "notebooks").iterdir()}
    home = tmp_path / ".workbench"
    env = {**doc_env(tmp_path, tmp_path), "WORKBENCH_DEMO_FAST": "1", "COLUMNS": "200"}
    proc = subprocess.run([str(VENV_BIN / "workbench"), "demo", str(home), "--no-serve"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=840)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    after = {p.name: p.stat().st_mtime_ns for p in (REPO / "notebooks").iterdir()}
    assert after == before, f"the demo changed the repository's notebooks/: {set(after.items()) ^ set(before.items())}"
    report = home / "reports" / "sweep_report.html"
    assert report.is_file() and "plotly" in report.read_text()
    assert f"Reports:    {home / 'reports'}" in proc.stdout

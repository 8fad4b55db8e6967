"""Run kernels (normal and fork-server) become ready through ReadyKernelClient and work as usual; how long
they may take to answer is `$WORKBENCH_KERNEL_START_TIMEOUT`, and a value that is no number of seconds is an error."""

from __future__ import annotations

import asyncio

import pytest
from conftest import run_cli_in_process

import workbench as wb
from workbench.errors import ValidationError
from workbench.kernels.readiness import ENV_START_TIMEOUT, KERNEL_START_TIMEOUT, ReadyKernelClient, kernel_start_timeout
from workbench.runs.runner import kernel_manager_with_env


async def _start_run_stop(tmp_path, preload) -> str:
    """Start a kernel the way runs do, wait until it is ready, run one cell, shut it down."""
    manager = kernel_manager_with_env({"WB_PROBE": "from-env"}, tmp_path / "kernel.log", preload)(
        kernel_name="python3"
    )
    await manager.start_kernel()
    client = manager.client()
    assert isinstance(client, ReadyKernelClient)
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        outputs: list[str] = []

        def keep(msg) -> None:
            if msg["msg_type"] == "stream":
                outputs.append(msg["content"]["text"])

        reply = await client.execute_interactive("import os; print(os.environ['WB_PROBE'])", output_hook=keep,
                                                 timeout=60)  # fmt: skip
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        await manager.shutdown_kernel()
    assert not await manager.is_alive()
    return "".join(outputs)


@pytest.mark.parametrize("preload", [None, ["json"]], ids=["normal kernel", "fork-server kernel"])
def test_kernel_is_ready_and_runs_code_with_its_environment(tmp_path, preload):
    assert asyncio.run(_start_run_stop(tmp_path, preload)) == "from-env\n"


def test_kernel_start_timeout_reads_its_variable(monkeypatch):
    monkeypatch.delenv(ENV_START_TIMEOUT, raising=False)
    assert kernel_start_timeout() == KERNEL_START_TIMEOUT
    monkeypatch.setenv(ENV_START_TIMEOUT, " ")
    assert kernel_start_timeout() == KERNEL_START_TIMEOUT
    monkeypatch.setenv(ENV_START_TIMEOUT, "2.5")
    assert kernel_start_timeout() == 2.5


@pytest.mark.parametrize("bad", ["abc", "-1", "0", "nan"])
def test_an_invalid_kernel_start_timeout_is_an_error_naming_the_variable(monkeypatch, bad):
    """It used to be ignored silently (the default applied), so a typo only showed as a slow failure."""
    monkeypatch.setenv(ENV_START_TIMEOUT, bad)
    message = rf"\$WORKBENCH_KERNEL_START_TIMEOUT must be a positive number, not '{bad}'"
    with pytest.raises(ValidationError, match=message):
        kernel_start_timeout()


def test_a_run_with_an_invalid_kernel_start_timeout_is_refused_before_anything_is_recorded(ws, notebook, capsys,
                                                                                             monkeypatch):  # fmt: skip
    nb = notebook("quick", "x = 1", "y = x")
    monkeypatch.setenv(ENV_START_TIMEOUT, "abc")
    with pytest.raises(ValidationError, match="WORKBENCH_KERNEL_START_TIMEOUT"):
        wb.run(nb)
    refused = run_cli_in_process(capsys, "run", str(nb))
    assert refused.returncode == 2, refused
    assert "$WORKBENCH_KERNEL_START_TIMEOUT must be a positive number, not 'abc'" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert wb.runs().empty  # no run was queued, so none failed

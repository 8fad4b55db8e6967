"""Run kernels (normal and fork-server) become ready through ReadyKernelClient and work as usual."""

from __future__ import annotations

import asyncio

import pytest

from workbench.kernels.readiness import ReadyKernelClient
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

"""Fork-server kernels: isolation, same results as normal kernels, fallback, thread budget, crashes."""

from __future__ import annotations

import logging
import os
import signal

import pytest

import workbench as wb
from workbench.kernels import client
from workbench.runs.params import read_notebook

PROBE = """
import os, sys, random
import numpy as np
import workbench as wb
from threadpoolctl import threadpool_info
wb.log_metric("leaked_global", float("leak" in globals()))
wb.log_metric("leaked_module_attr", float(hasattr(np, "_workbench_leak")))
leak = 1
np._workbench_leak = True
wb.log_metric("pid_is_server", float(os.getppid() == 1))
wb.log_metric("max_threads", float(max([p["num_threads"] for p in threadpool_info()] or [0])))
wb.log_metric("random", random.random())
wb.log_param("cwd", os.getcwd())
if crash:
    os.kill(os.getpid(), 9)
"""

TRAIN = """
import workbench as wb
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
X, y = load_wine(return_X_y=True)
model = RandomForestClassifier(n_estimators=20, random_state=seed).fit(X, y)
wb.log_metric("score", float(model.score(X, y)))
wb.log_metric("first_importance", float(model.feature_importances_[0]))
"""


@pytest.fixture()
def probe(notebook):
    return notebook("probe", "crash = False", PROBE)


def _server_pid(nb_path) -> int:
    from workbench.kernels.preload import preload_list

    return client.request(client.socket_path(preload_list(read_notebook(nb_path))), {"op": "ping"})["pid"]


def test_each_run_is_a_fresh_process_with_its_own_state(ws, probe, tmp_path):
    first, second = wb.run(probe, fast=True), wb.run(probe, fast=True)
    for run in (first, second):
        assert run.status == "finished", run.error
        assert run.metrics["leaked_global"] == 0 and run.metrics["leaked_module_attr"] == 0
        assert run.params["cwd"] == str(tmp_path)
    assert first.metrics["random"] != second.metrics["random"]  # reseeded after fork


def test_fast_and_normal_kernels_give_the_same_results(ws, notebook):
    nb = notebook("train", "seed = 0", TRAIN)
    fast, normal = wb.run(nb, {"seed": 3}, fast=True), wb.run(nb, {"seed": 3}, fast=False)
    assert fast.status == normal.status == "finished"
    assert fast.metrics == normal.metrics


def test_falls_back_to_a_normal_kernel_when_the_fork_server_is_unavailable(ws, probe, monkeypatch, caplog):
    def unavailable(modules):
        raise client.ForkServerUnavailable("no fork server in this test")

    monkeypatch.setattr("workbench.kernels.provisioner.ensure_server", unavailable)
    with caplog.at_level(logging.WARNING, logger="workbench.kernels"):
        run = wb.run(probe, fast=True)
    assert run.status == "finished"
    assert "starting a normal kernel" in caplog.text


def test_a_killed_fork_server_is_replaced(ws, probe):
    assert wb.run(probe, fast=True).status == "finished"
    os.kill(_server_pid(probe), signal.SIGKILL)
    assert wb.run(probe, fast=True).status == "finished"


@pytest.mark.slow
def test_thread_budget_and_a_crashing_kernel_in_a_parallel_sweep(ws, probe):
    result = wb.sweep(probe, {"crash": [False, True, False]}, parallel=2, fast=True)
    runs = {run_id: wb.get_run(run_id) for run_id in result.run_ids}
    crashed = [r for r in runs.values() if r.params["crash"]]
    healthy = [r for r in runs.values() if not r.params["crash"]]
    assert [r.status for r in crashed] == ["failed"]
    assert [r.status for r in healthy] == ["finished", "finished"]
    cores = len(os.sched_getaffinity(0))
    assert all(r.metrics["max_threads"] <= max(1, cores // 2) for r in healthy)
    assert _server_pid(probe) > 0  # the server survived the crash

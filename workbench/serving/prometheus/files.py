"""The files an operator loads into Prometheus and Grafana, shipped in the package and written out
by `workbench export prometheus DIR`: the alert rules, the Grafana dashboard and a sample scrape
config that loads the rules and scrapes the given model servers."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from workbench.errors import ValidationError
from workbench.serving.export_folder import write_folder

ALERTS = "alerts.yml"
DASHBOARD = "grafana-dashboard.json"
SCRAPE_CONFIG = "prometheus.yml"
#: Where `workbench serve` listens by default.
DEFAULT_TARGET = "127.0.0.1:8000"

_SCRAPE_TEMPLATE = """\
# A Prometheus configuration scraping workbench model servers (`workbench serve ... --port PORT`).
# Run: prometheus --config.file=prometheus.yml   (alerts.yml next to this file)
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - {alerts}
scrape_configs:
  - job_name: workbench-model
    metrics_path: /metrics
    static_configs:
      - targets: [{targets}]
"""


def packaged(name: str) -> str:
    """The text of a file shipped in this package (`ALERTS`, `DASHBOARD`)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def scrape_config(targets: list[str] | None = None, alerts: str = ALERTS) -> str:
    """A prometheus.yml scraping `targets` (HOST:PORT each) every 15 s and loading the rules file `alerts`."""
    targets = targets or [DEFAULT_TARGET]
    for target in targets:
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit() or any(c in target for c in " \"'[],#"):
            raise ValidationError(f"Invalid scrape target {target!r}.", "Give HOST:PORT, e.g. 127.0.0.1:8000.")
    return _SCRAPE_TEMPLATE.format(alerts=alerts, targets=", ".join(f'"{t}"' for t in targets))


def export_files(directory: str | Path, targets: list[str] | None = None, *, force: bool = False) -> list[Path]:
    """Write alerts.yml, grafana-dashboard.json and prometheus.yml into `directory` (made if missing).

    Existing files are kept unless `force`: an operator may have tuned the thresholds. Each file
    is written whole or not at all, and nothing is written when any would be refused
    (`export_folder.write_folder`, the rules of every export)."""
    contents = {ALERTS: packaged(ALERTS), DASHBOARD: packaged(DASHBOARD), SCRAPE_CONFIG: scrape_config(targets)}
    return write_folder(directory, contents, force=force)

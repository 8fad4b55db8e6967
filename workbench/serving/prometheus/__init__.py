"""Prometheus and Grafana for the model server: drift and live-quality gauges (`gauges`), and the
files an operator loads (`alerts.yml`, `grafana-dashboard.json`, a sample scrape config), written
out by `workbench export prometheus DIR` (`files.export_files`)."""

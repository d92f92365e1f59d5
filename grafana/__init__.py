"""Grafana for sessionhub: provisioning, dashboards as code, and their generator."""

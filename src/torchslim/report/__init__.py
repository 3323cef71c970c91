"""Report dataclasses and renderers (terminal table, JSON)."""

from torchslim.report.report import SUMMARY_KEYS, Report, environment
from torchslim.report.table import render_table

__all__ = ["Report", "SUMMARY_KEYS", "environment", "render_table"]

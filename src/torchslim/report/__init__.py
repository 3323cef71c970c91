"""Report dataclasses and renderers (terminal table, JSON, HTML) and quality verdicts."""

from torchslim.report.report import SUMMARY_KEYS, Report, environment
from torchslim.report.table import render_table
from torchslim.report.verdicts import DEFAULT_MAX_DROP, Verdict, compute_verdicts

__all__ = ["DEFAULT_MAX_DROP", "Report", "SUMMARY_KEYS", "Verdict", "compute_verdicts", "environment", "render_table"]

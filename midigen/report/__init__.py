"""The report page: metrics, piano rolls and audio of a run."""

from midigen.report.page import Inputs, build_report

__all__ = ["Inputs", "build_report"]

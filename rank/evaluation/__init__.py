"""Measuring a queue against labels (``metrics``) and the sweep report (``report``)."""

from riskrank.rank.evaluation.metrics import ranking_report

__all__ = ["ranking_report"]

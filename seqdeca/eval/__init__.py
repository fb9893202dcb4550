"""Evaluation: pure metrics (:mod:`~seqdeca.eval.metrics`), the frame-window evaluation runner
(:mod:`~seqdeca.eval.runner`) and its report writer (:mod:`~seqdeca.eval.report`); the detail
stage's metrics (:mod:`~seqdeca.eval.detail_metrics`) and pictures
(:mod:`~seqdeca.eval.detail_plots`). Import the submodules; nothing is imported here so that
``import seqdeca.eval`` stays cheap.
"""

"""Evaluation metrics: pure metrics (:mod:`~seqdeca.eval.metrics`), whole prepared clips
(:mod:`~seqdeca.eval.clips`) and their per-frame metric series
(:mod:`~seqdeca.eval.clip_metrics`); the detail stage's metrics
(:mod:`~seqdeca.eval.detail_metrics`), evaluation (:mod:`~seqdeca.eval.detail_eval`) and pictures
(:mod:`~seqdeca.eval.detail_plots`). Training validation uses them; the evaluation runner that
predicts through the inference engines is :mod:`seqdeca.evaluation.runner`, a layer above. Import
the submodules; nothing is imported here so that ``import seqdeca.eval`` stays cheap.
"""

"""The evaluation runner: every method on every valid frame of every prepared clip
(:mod:`~seqdeca.evaluation.runner`), its pooled results (:mod:`~seqdeca.evaluation.results`) and
its report (:mod:`~seqdeca.evaluation.report`, plots in :mod:`~seqdeca.evaluation.plots`).

It sits with ``train`` and ``inference`` because it predicts through the inference engines; the
metrics it computes are the pure functions of :mod:`seqdeca.eval`, which training validation
uses too. Import the submodules; nothing is imported here so that ``import seqdeca.evaluation``
stays cheap.
"""

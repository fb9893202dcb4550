"""Training: the Accelerate loop (:mod:`~seqdeca.train.loop`), per-stage steps
(:mod:`~seqdeca.train.steps`), the optimizer (:mod:`~seqdeca.train.optim`) and checkpoints /
train state (:mod:`~seqdeca.train.state`). Import the submodules; nothing is imported here so
that ``import seqdeca.train`` stays cheap.
"""

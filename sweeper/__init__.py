"""Orchestration for the MLflow + Optuna hyperparameter sweep.

Data flows one way: params -> :mod:`sweeper.config` -> :mod:`sweeper.data` -> one Optuna study
per family (:mod:`sweeper.study`) -> trial objective (:mod:`sweeper.objective`, no MLflow) ->
MLflow child runs (:mod:`sweeper.tracking`) -> champion (:mod:`sweeper.champion`).
"""

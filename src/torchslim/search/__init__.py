"""Automated compression: a target in, per-layer choices by a multi-objective optuna study, the Pareto front out."""

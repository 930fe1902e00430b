"""The search layer: the Optuna objective, workers and their launcher, retraining, samplers, progress and status.

Importing it changes nothing global: logging and Optuna's verbosity are set by the command line
(:func:`hpo.logs.configure`).
"""

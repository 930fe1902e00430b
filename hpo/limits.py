"""Bounds on counts, shared by the study spec and the command line: a typo like ``trials: 100000000`` is refused at
once, with the allowed range, instead of queuing tickets without end."""

MAX_TRIALS = 10_000  # per architecture
MAX_SEEDS = 10_000  # retrain seeds per architecture
MAX_WORKERS = 256  # worker processes started by one command
MAX_REPLICATES = 50  # independent tuning studies per architecture (``replicates``)

"""Every tuning trial of the studies that exist in a storage so far, as one CSV (a long run's progress, readable
before `hpo export` can write the whole study): python scripts/partial_trials.py STORAGE_URL OUT.csv"""

from __future__ import annotations

import sys

import optuna
import pandas as pd

from hpo.report.collect import trials_frame
from hpo.storage import keys

optuna.logging.set_verbosity(optuna.logging.WARNING)
url, out = sys.argv[1], sys.argv[2]
frames = []
for summary in optuna.get_all_study_summaries(url):
    name = summary.study_name
    if name.count("/") != 1:  # tuning studies only (not retrain, claims or worker registries)
        continue
    study = optuna.load_study(study_name=name, storage=url)
    attrs = keys.plain(study.user_attrs)
    frames.append(
        trials_frame(study, name.split("/")[1]).assign(
            study=name, stop_reason=attrs.get("stop_reason"), tickets_target=attrs.get("tickets_target")
        )
    )
pd.concat(frames, ignore_index=True).to_csv(out, index=False)
print(f"{sum(len(f) for f in frames)} trials of {len(frames)} studies -> {out}")

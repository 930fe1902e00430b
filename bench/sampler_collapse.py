"""Search quality, not speed: does a trial that learned nothing slow the GP sampler down, and does hpo's view
(``sampler: {collapsed: worst}``, :mod:`hpo.search.collapse`) help?

A census-like surface: four parameters in [0, 1], a quadratic bowl whose best is 0.947 and whose worst corner is
about 0.940 (validation AUCs of the census studies span about that), noise of 1.5e-4 per trial (the spread of a
configuration over seeds there). Three scenarios of collapse, each trial scoring the chance level 0.5 instead:

* ``region``: where x0 > 0.75 and x1 > 0.5 (an eighth of the space: a fast learning rate on wide layers);
* ``random``: one trial in ten wherever it is (a seed that diverged);
* ``slow``: where x0 < 0.15 the trial learns little (0.80 +- 0.01: too low a learning rate for its epochs), an
  outlier that is not at the chance level;
* ``none``: never (the control: the view must change nothing).

Each scenario runs ``--reps`` tuning runs of 32 trials (6 random, then the GP) per sampler, paired by seed, with
Optuna's plain GP (``raw``, the reference) and with hpo's view (``worst``); the regret is 0.947 minus the true
value of the configuration with the best observed value. It prints the mean regret at 12, 18 and 32 trials and
the ratio worst / raw from the same run, with the number of paired runs where hpo's view did better.

    python bench/sampler_collapse.py [--reps 20] [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import optuna

from hpo.search.collapse import CollapseAwareGPSampler

CENTRE = np.array([0.35, 0.8, 0.5, 0.7])
WEIGHT = np.array([1.0, 0.6, 0.3, 0.5])
BEST, CHANCE, NOISE, TRIALS, AT = 0.947, 0.5, 1.5e-4, 32, (12, 18, 32)


def true_value(x: np.ndarray) -> float:
    return BEST - 0.006 * float(np.sum(WEIGHT * (x - CENTRE) ** 2))


def tune(sampler_name: str, scenario: str, seed: int) -> dict[int, float]:
    """One tuning run; the regret of its best observed configuration after each count in ``AT``."""
    rng = np.random.default_rng(seed)
    options = {"seed": seed, "n_startup_trials": 6}
    sampler = (
        CollapseAwareGPSampler(chance=CHANCE, higher_is_better=True, **options)
        if sampler_name == "worst"
        else optuna.samplers.GPSampler(**options)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    space = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(4)}
    best, best_x, regret = -np.inf, np.zeros(4), {}
    for k in range(1, TRIALS + 1):
        trial = study.ask(space)
        x = np.array([trial.params[f"x{i}"] for i in range(4)])
        collapsed = (scenario == "region" and x[0] > 0.75 and x[1] > 0.5) or (
            scenario == "random" and rng.random() < 0.1
        )
        if collapsed:
            value = CHANCE
        elif scenario == "slow" and x[0] < 0.15:
            value = 0.80 + rng.normal(0.0, 0.01)
        else:
            value = true_value(x) + rng.normal(0.0, NOISE)
        study.tell(trial, value)
        if value > best:
            best, best_x = value, x
        if k in AT:
            regret[k] = BEST - true_value(best_x)
    return regret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = {}
    for scenario in ("region", "random", "slow", "none"):
        runs = {s: [tune(s, scenario, seed) for seed in range(args.reps)] for s in ("raw", "worst")}
        for k in AT:
            raw = np.array([r[k] for r in runs["raw"]])
            worst = np.array([r[k] for r in runs["worst"]])
            out[f"{scenario}_{k}"] = {
                "raw_regret": float(raw.mean()),
                "worst_regret": float(worst.mean()),
                "worst_vs_raw": float(worst.mean() / raw.mean()),
                "worst_better_in": int((worst < raw).sum()),
                "worse_in": int((worst > raw).sum()),
                "runs": args.reps,
            }
            r = out[f"{scenario}_{k}"]
            if not args.json:
                print(
                    f"{scenario:>6} {k:>2} trials: regret raw {r['raw_regret']:.2e}, worst {r['worst_regret']:.2e}"
                    f" -> ratio {r['worst_vs_raw']:.2f} (better in {r['worst_better_in']}, worse in "
                    f"{r['worse_in']} of {args.reps} paired runs)",
                    flush=True,
                )
    if args.json:
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

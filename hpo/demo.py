"""The main job behind ``make demo``: tune, retrain over seeds and report, on the real census data.

``studies/demo.yaml`` tunes Shared-Bottom, MMoE and PLE with the GP sampler under the shared budget, retrains
each best configuration over a dozen seeds, and writes ``reports/demo.html``. Everything goes through an SQLite
file (``hpo-demo.db``), so a second run resumes instead of starting over, and the dashboard can show it.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from hpo.config.study import load_study
from hpo.report.html import write_report
from hpo.report.output import staged_folder
from hpo.search.retrain import run_retrain
from hpo.search.runner import run_study
from hpo.storage.engine import mask_url, normalise_url

__all__ = ["DEMO_STUDY", "run_demo"]

DEMO_STUDY = Path(__file__).resolve().parents[1] / "studies" / "demo.yaml"


def run_demo(
    *,
    study: Path = DEMO_STUDY,
    storage: str = "sqlite:///hpo-demo.db",
    out: Path = Path("reports/demo.html"),
    device: str = "auto",
    data_dir: str | None = None,
    quiet: bool = False,
) -> Path:
    console = Console(stderr=True, quiet=quiet)
    spec = load_study(study)
    if data_dir is not None:
        spec = spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"data_dir": data_dir})})
    url = normalise_url(storage)
    t0 = time.perf_counter()
    archs = ", ".join(a.name for a in spec.architectures)
    console.print(
        f"[bold]hpo demo[/bold]: census-income group {getattr(spec.dataset, 'group', 1)}; {archs}; "
        f"{spec.trials} {spec.sampler.name.upper()} trials each, then {spec.retrain.seeds} seeds each"
    )
    console.print("1/3 tuning (the first run prepares and caches the census data)")
    run_study(spec, url, devices=[device], quiet=quiet)
    console.print(f"    tuned in {time.perf_counter() - t0:.0f} s")
    console.print(f"2/3 retraining each best configuration over {spec.retrain.seeds} seeds")
    run_retrain(spec, url, devices=[device], quiet=quiet)
    console.print(f"    retrained by {time.perf_counter() - t0:.0f} s")
    console.print("3/3 writing the report")
    with staged_folder(Path(out).parent) as stage:  # the page and its CSVs appear whole or not at all
        write_report(spec, stage / Path(out).name, url)
    path = Path(out)
    console.print(f"done in {time.perf_counter() - t0:.0f} s")
    print(f"report: {path.resolve()}")
    print(f"dashboard: hpo dashboard --storage {mask_url(url)}   (then open http://127.0.0.1:8080)")
    return path

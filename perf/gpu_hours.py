"""Estimated H100 hours of the training steps of each notebook's ``paper`` preset (sga.gpu_plan: no GPU, no hub).

    HF_HUB_OFFLINE=1 python perf/gpu_hours.py

The runs each notebook makes at the ``paper`` preset, as their specs (``presets.resolve(benchmark, "paper")``), each
run's step from :func:`sga.gpu_plan.run_step` on the planner's shape of the preset's target model (Llama-2-7B for
TOFU and MUSE-News, OPT-2.7B for Harry Potter), as the run is (no ``gpu_memory_gb``: the preset's micro-batches):

- 02: GA's budget scan (``budget_scan_epochs``); GA, SGA and GradDiff with SGA's weights at every seed; the other
  baselines of ``methods`` and three controls (SGA descent, SGA tf-idf, GA unclipped) once, at the budget the scan
  fixes, assumed to be the preset's ``epochs``.
- 03: every method of ``methods``, and SGA at each rate of ``sga_rates``. 04: every method of ``methods``.
- 05: ``design.study("paper")``'s pilot, core (both worlds), ladders, ablations and equal compute, built by
  :mod:`sga.design` without running anything, with GA's steps to the level S assumed to be the preset's epochs x
  steps per epoch: every run stops at ``budget_factor`` x S at the latest (the pilot at ``pilot_factor`` x the
  epochs), and equal compute's GA is given SGA's token passes at that last step, with normal samples as long as
  forget ones (about K x 2 S steps). Located runs stop earlier (their crossing plus ``tail``): 05's steps are
  the most its runs take.

Forget-set sizes (samples): TOFU forget10 400 questions; Harry Potter about 866 passages of 400 words (the four
books of MUSE-Books raw/forget, HP 1, 4, 5 and 6, about 694k words by their published counts, cut into 1732
passages, every other one to the train split); MUSE-News 889 (the raw/forget articles, one 2048-token chunk each
at least: longer articles give more, so a lower bound).

Training steps only: evaluation and generation (per-epoch readings, full evaluations, crossing readings), loading,
saving and Harry Potter's target fine-tune are excluded, so the hours of 02-04 are a lower bound of their GPU time;
05's count its runs' training steps at most, its evaluation not at all (a bound of neither side of its GPU time).
"""

from __future__ import annotations


from sga import design, presets
from sga.analysis import descent_equivalent_rate
from sga.gpu_plan import LLAMA2_7B, OPT_2_7B, ModelShape, run_hours, run_steps, steps_per_run
from sga.presets import Settings
from sga.specs import RunSpec

BENCHMARKS = ("tofu", "harry_potter", "muse_news")
N_FORGET = {"tofu": 400, "harry_potter": 866, "muse_news": 889}
SHAPES: dict[str, ModelShape] = {  # the paper presets' target models: no hub config needed
    "open-unlearning/tofu_Llama-2-7b-chat-hf_full": LLAMA2_7B,
    "facebook/opt-2.7b": OPT_2_7B,
    "muse-bench/MUSE-News_target": LLAMA2_7B,
}
NOTEBOOKS = {"tofu": "02", "harry_potter": "03", "muse_news": "04"}


def notebook_runs(settings: Settings) -> list[RunSpec]:
    """The runs notebook 02, 03 or 04 makes with ``settings``."""
    methods, seeds = settings.plan.methods, settings.plan.seeds
    if settings.benchmark == "tofu":
        sga = settings.options_of("sga")
        compared = [settings.run(m, seed=s) for m in ("ga", "sga", "graddiff") for s in seeds]  # weights: same step
        once = [settings.run(m, seed=seeds[0]) for m in ("graddiff", "kl", "npo", "simnpo", "flat") if m in methods]
        controls = [settings.run("sga", reading="descent", rate=descent_equivalent_rate(sga.rate, sga.k)),
                    settings.run("sga", normal_source="tfidf"), settings.run("ga", max_grad_norm="none")]
        return [settings.run("ga", epochs=settings.plan.budget_scan_epochs), *compared, *once, *controls]
    runs = [settings.run(m) for m in methods]
    if settings.benchmark == "harry_potter":
        runs += [settings.run("sga", rate=rate, trajectory=False) for rate in settings.plan.sga_rates]
    return runs


def study_runs(study: design.Study) -> dict[str, list[RunSpec]]:
    """Notebook 05's runs by benchmark, with S = the preset's epochs x steps per epoch."""
    worlds = {(b, 0): presets.resolve(b, "paper") for b in BENCHMARKS}
    if study.second_world is not None:
        worlds.update({(b, study.second_world): presets.resolve(b, "paper", world_seed=study.second_world) for b in BENCHMARKS})
    steps = {key: steps_per_run(N_FORGET[key[0]], s.training.batch_size, s.training.epochs) for key, s in worlds.items()}
    points = design.pilot(worlds, study) + design.core(worlds, steps, N_FORGET, study)
    for b in BENCHMARKS:
        first, s = worlds[(b, 0)], steps[(b, 0)]
        points += design.ladders(first, s, N_FORGET[b], study)
        points += design.ablations(first, s, N_FORGET[b], study) if study.ablations else []
        length, k = first.world.max_length, first.options_of("sga").k
        last = design.study_overrides(first, study, s, N_FORGET[b])["max_steps"]
        sga_tokens = 2 * k * length * first.training.batch_size * last  # forward + backward passes at SGA's last step
        points += design.equal_compute(first, sga_tokens, [length] * N_FORGET[b], study)
    out: dict[str, list[RunSpec]] = {b: [] for b in BENCHMARKS}
    for point in points:
        out[point.benchmark].append(point.run)
    return out


def row(notebook: str, benchmark: str, runs: list[RunSpec]) -> tuple[str, str, int, int, float]:
    model, n = SHAPES[runs[0].world.target_model], N_FORGET[benchmark]
    return (notebook, benchmark, len(runs), sum(run_steps(r, n) for r in runs), sum(run_hours(r, model, n) for r in runs))


def main() -> None:
    rows = [row(NOTEBOOKS[b], b, notebook_runs(presets.resolve(b, "paper"))) for b in BENCHMARKS]
    rows += [row("05", b, runs) for b, runs in study_runs(design.study("paper")).items()]
    rows.append(("all", "", *(sum(r[i] for r in rows) for i in (2, 3, 4))))
    print(f"{'notebook':8s}  {'benchmark':12s}  {'runs':>5s}  {'steps':>7s}  {'H100 hours':>10s}")
    for notebook, benchmark, runs, steps, hours in rows:
        print(f"{notebook:8s}  {benchmark:12s}  {runs:5d}  {steps:7d}  {hours:10.1f}")
    print("Training steps only (evaluation/generation, loading, saving and Harry Potter's target fine-tune excluded):\n"
          "a lower bound of the GPU time (02-04). Notebook 05's steps are at most (S = the preset's epochs x steps per epoch).\n"
          f"Forget sets: {', '.join(f'{b} {n}' for b, n in N_FORGET.items())} samples (see the module docstring).")


if __name__ == "__main__":
    main()

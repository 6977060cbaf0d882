"""``fasr bench quality``: train every method of a suite the same way on the same data, score it, tabulate.

Suites (the paper's tables): ``methods`` (Table I: bicubic, EDSR, SwinIR, MCSR, MINet, TTSR, FASR), ``modules``
(Table III), ``losses`` (Table IV), ``backbones`` (Table II). Every run of a suite starts from one base config
(``configs/cpu-quick.yaml``) with the benchmark task on top (x4, T2 from T1, BraTS), gets the same split and the
same number of optimiser steps, is trained by :func:`fasr.training.trainer.train` and scored by
:func:`fasr.evaluation.evaluate.evaluate_checkpoint` on the held-out subject. Ablation rows are the deltas in
``configs/ablations/``.

Step budget: ``--steps N`` fixes it; otherwise each row's seconds per optimiser step are timed (a few steps on
random tensors of the configured batch and patch) and ``steps = budget / sum over runs of seconds per step``,
so the training steps of the whole suite fill ``--budget-minutes``; data loading, validation and scoring come on
top and are part of each run's reported wall time. The final weights (``last.pt``) are scored, never a
checkpoint selected on the scored subject.

Outputs in ``--out``: ``<suite>.json`` and ``<suite>.md`` (per row: PSNR and SSIM mean and standard deviation
over seeds and folds, parameters, steps, wall time; git commit, command, machine), ``<suite>.png`` (scores with
error bars), ``<suite>-residuals.png`` (outputs and residual maps on one held-out slice, like Fig. 8) and
``<suite>-curves.png`` (validation PSNR during training, like Fig. 11). Run folders live in
``<out>/runs/<suite>/``; a finished run whose config, scoring and source code are unchanged is reused, so an
interrupted suite continues where it stopped.

Modules: :mod:`~fasr.bench.quality.suites` (rows and run configs), :mod:`~fasr.bench.quality.budget` (step
budget), :mod:`~fasr.bench.quality.runs` (training and scoring with the run cache,
:func:`~fasr.bench.quality.runs.train_reference`), :mod:`~fasr.bench.quality.report` (statistics, Markdown,
figures), :mod:`~fasr.bench.quality.cli` (the command).
"""

__all__: list[str] = []

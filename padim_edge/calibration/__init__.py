"""Calibration: bake a decision threshold, and INT8 / FP16 variants of the exported graph.

Needs onnx, onnxruntime and onnxconverter-common (``pip install 'padim-edge[calibrate,cpu]'``), never
torch: it runs on the same edge and CI boxes as the runtime.

* :mod:`.cli` / :mod:`.pipeline`: ``padim-calibrate`` and :func:`~padim_edge.calibration.pipeline.calibrate`,
  what it runs, after :mod:`.request` checked the options; :mod:`.settings` (stdlib only, for
  ``--help``) and :mod:`.errors`.
* :mod:`.formats`: the table of variants (the single source of truth for names, suffixes, metadata);
  :mod:`.variant_build`: what a variant's build function takes and returns.
* :mod:`.threshold` / :mod:`.decision`: choosing a threshold and baking it into the graph.
* :mod:`.int8`: static INT8 quantisation of the backbone, with :mod:`.int8.refit` (the head's Gaussians
  or memory bank re-estimated on the INT8 backbone's own embeddings) and :mod:`.int8.refit_head` (that
  step inside a variant build).
* :mod:`.fp16`, :mod:`.head`, :mod:`.graph`: the FP16 backbone, the head-precision rewrites, graph
  helpers they share; :mod:`.modelio` / :mod:`.scoring`: loading, saving and scoring models.
* :mod:`.fidelity`: the fidelity report and its verdict, with :mod:`.fidelity.frames` (which frames),
  :mod:`.fidelity.figures` (numpy AUROC, Spearman, map error), :mod:`.fidelity.synthetic_defects`
  (the label-free check), :mod:`.fidelity.stats` (its bootstrap intervals) and
  :mod:`.fidelity.labeled` (``--labeled``).

Kept thin: importing the threshold code does not pull in onnxruntime.quantization.

Example:
    >>> from padim_edge.calibration.pipeline import calibrate
    >>> report = calibrate("model.onnx", "model-int8.onnx", variant="int8-qoperator", data="holdout/good",
    ...                    target_fpr=0.01)
    >>> report.choice.threshold, [str(f) for f in report.files]
"""

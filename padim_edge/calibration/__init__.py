"""Calibration: bake a decision threshold, and INT8 / FP16 variants of the exported graph.

Needs onnx, onnxruntime and onnxconverter-common (``pip install 'padim-edge[calibrate,cpu]'``), never
torch: it runs on the same edge and CI boxes as the runtime.

* :mod:`.formats`: the table of variants (the single source of truth for names, suffixes, metadata).
* :mod:`.pipeline`: :func:`~padim_edge.calibration.pipeline.calibrate`, what ``padim-calibrate`` runs.
* :mod:`.threshold` / :mod:`.decision`: choosing a threshold and baking it into the graph.
* :mod:`.int8`, :mod:`.fp16`: the backbone variants.
* :mod:`.refit`: re-estimating the PaDiM head's Gaussians on an INT8 backbone's own embeddings.

Kept thin: importing the threshold code does not pull in onnxruntime.quantization.

Example:
    >>> from padim_edge.calibration.pipeline import calibrate
    >>> report = calibrate("model.onnx", "model-int8.onnx", variant="int8-qoperator", data="holdout/good",
    ...                    target_fpr=0.01)
    >>> report.choice.threshold, [str(f) for f in report.files]
"""

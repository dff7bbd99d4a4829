"""PaDiM (Defard et al., 2020): per-patch Gaussians and the Mahalanobis distance.

* :mod:`.model`: the PyTorch module (preprocessing, truncated backbone, reduction, head).
* :mod:`.reduction`: the tapped maps to the embedding: the fixed random channel subset (index-select, the
  default) or a fixed random semi-orthogonal projection (``--reduction orthogonal``).
* :mod:`.mahalanobis`: the PyTorch reference of the distance.
* :mod:`.settings`: the head's precisions, column blocks and panel alignment (stdlib only: the CLIs'
  ``--help`` reads them).
* :mod:`.graph_head`: the same distance built directly in ONNX against baked constants (no torch),
  what the exported graph runs; :mod:`.compact_head`: its int8 / float16 Sigma^-1 variants, with
  :mod:`.low_rank` (the float32 low-rank split) and :mod:`.panel_quantize` (int8 / float16 panels);
  :mod:`.head_io`: reading a head's constants back out of a graph and rebuilding it (calibration).

Kept thin: importing :mod:`.graph_head` must not import torch (calibration rebuilds heads torch-free).
"""

"""PatchCore (Roth et al., CVPR 2022): a coreset memory bank of patch features, nearest-neighbour scores.

A sibling of :mod:`padim_edge.export.padim` behind the same :class:`~padim_edge.export.method.AnomalyMethod`
contract, so the exporter, the runtime, evaluation, calibration and benchmarks treat it like PaDiM.

* :mod:`.settings`: defaults (embedding dims per backbone, coreset fraction, neighbours, projection).
* :mod:`.model`: the PyTorch module (preprocessing, mid-level backbone taps, aggregation, bank).
* :mod:`.aggregation`: the locally aware patch features, traced into the graph.
* :mod:`.coreset`: greedy k-center selection on a seeded Johnson-Lindenstrauss projection.
* :mod:`.bank`: the streaming memory bank (per-chunk coresets merged by a final greedy pass).
* :mod:`.nearest`: the reference scorer (exact nearest neighbour, re-weighted image score).
* :mod:`.neighbours`: the ``N_b`` neighbour table computed at fit time (numpy only: the INT8 bank refit
  in :mod:`padim_edge.calibration.refit` builds it without torch).
* :mod:`.graph_head`: the same scores built directly in ONNX against the baked bank (no torch).
* :mod:`.compact_bank`: the fp16 / int8 bank (``--head-precision``): storage, ranking nodes, error bound.
* :mod:`.head_io`: read a graph's bank back and rebuild its head in another precision (calibrate).
* :mod:`.fit`: stream images into the bank and install it in the module.

Kept thin: importing :mod:`.graph_head` or :mod:`.settings` must not import torch.
"""

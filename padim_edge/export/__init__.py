"""The torch side: fit a method on normal images and export one fused ONNX graph.

Shared by every method: :mod:`.backbones` (building the CNN), :mod:`.preprocessing` (the one
preprocessing definition), :mod:`.features` (the truncated backbone), :mod:`.anomaly_map` (the
reference upsample + blur) and :mod:`.graph_map` (the same in ONNX), :mod:`.exporter` (trace + head +
metadata + save), :mod:`.fit`, and :mod:`.pipeline` (the public API: build, fit, export).
Method-specific code lives in sub-packages: :mod:`.padim`.

Kept thin (no eager torch import), so torch-free code can import the ONNX builders below it.
"""

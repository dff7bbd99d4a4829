"""padim-edge: PaDiM anomaly detection as one fused ONNX graph.

The package has three visible parts:

* :mod:`padim_edge.export`: the torch side (fit the Gaussians, export the graph).
* :mod:`padim_edge.runtime`: numpy + onnxruntime only (load the graph, predict).
* :mod:`padim_edge.calibration`: thresholds and INT8 / FP16 variants of the graph.
"""

__version__ = "0.1.0"

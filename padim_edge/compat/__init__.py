"""Will this graph build, and compute the same numbers, on TensorRT 8.5 / 8.6 / 10 and old onnxruntime?

A static check (onnx only, no torch, no GPU): :mod:`padim_edge.compat.rules` holds the rule table,
:mod:`padim_edge.compat.targets` the targets, :func:`padim_edge.compat.check.check_file` runs them, and
``padim-check`` is the command.
"""

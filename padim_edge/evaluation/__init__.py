"""Accuracy of a padim-edge model on MVTec AD-style test sets (the ``eval`` extra).

* :mod:`padim_edge.datasets`: test folders, labels, masks (shared with calibration and benchmarks).
* :mod:`~padim_edge.evaluation.predictions`: running a model over a category.
* :mod:`~padim_edge.evaluation.metrics`: image AUROC, pixel AUROC, confusion matrix; :mod:`.pro`: PRO.
* :mod:`~padim_edge.evaluation.report`: tables, JSON, ROC curves, image grid.
* :mod:`~padim_edge.evaluation.cli`: the ``padim-eval`` command.

Kept thin: import the sub-modules you need (metrics need scikit-learn and scipy).
"""

"""Accuracy of a padim-edge model on MVTec AD-style test sets (the ``eval`` extra).

* :mod:`~padim_edge.evaluation.dataset`: test folders, masks, running a model over a category.
* :mod:`~padim_edge.evaluation.metrics`: image AUROC, pixel AUROC, PRO, confusion matrix.
* :mod:`~padim_edge.evaluation.report`: tables, JSON, ROC curves, image grid.
* :mod:`~padim_edge.evaluation.cli`: the ``padim-eval`` command.
"""

from padim_edge.evaluation.dataset import (
    Category,
    CategoryPredictions,
    DatasetError,
    PredictionError,
    TestSample,
    find_categories,
    load_category,
    load_mask,
    mask_to_model_view,
    predict_category,
)
from padim_edge.evaluation.metrics import (
    CategoryResult,
    Confusion,
    MetricsRow,
    confusion,
    evaluate_category,
    image_auroc,
    mean_row,
    pixel_auroc,
    pro_curve,
    pro_score,
)

__all__ = [
    "Category",
    "CategoryPredictions",
    "CategoryResult",
    "Confusion",
    "DatasetError",
    "MetricsRow",
    "PredictionError",
    "TestSample",
    "confusion",
    "evaluate_category",
    "find_categories",
    "image_auroc",
    "load_category",
    "load_mask",
    "mask_to_model_view",
    "mean_row",
    "pixel_auroc",
    "predict_category",
    "pro_curve",
    "pro_score",
]

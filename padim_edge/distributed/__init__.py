"""Beyond one machine: the fit, many categories and batch scoring on a Ray cluster (``[ray]`` extra).

The only package of padim-edge that imports Ray, and only in the modules that do the work:

* :mod:`.cluster`: what ``--ray [ADDRESS]`` means (pure Python) and connecting to it.
* :mod:`.fit`: one model's fit sharded over Ray tasks; each returns its partial statistics, which
  merge pairwise in a tree (Chan et al.) into the accumulator the local fit uses.
* :mod:`.categories`: one model per category of an MVTec-style root, one Ray task each.
* :mod:`.scoring`: score an archive with an actor pool of torch-free :class:`PadimModel`\\ s (Ray Data),
  one Parquet file per shard of the image list, idempotent.

Kept thin: importing this package imports neither Ray nor torch.
"""

"""``padim-serve``: a long-running scoring service speaking the Open Inference Protocol (KServe v2).

Torch-free: models run through :class:`padim_edge.runtime.PadimModel`. Needs the ``serve`` extra
(Starlette + uvicorn). The pieces, one module each:

* :mod:`~padim_edge.serve.protocol`: v2 JSON tensors and the binary-data extension, in and out;
* :mod:`~padim_edge.serve.uploads`: encoded images for ``/v1/predict`` (raw body or multipart);
* :mod:`~padim_edge.serve.batching`: the dynamic micro-batcher of one model (bounded queue);
* :mod:`~padim_edge.serve.registry`: models by name, reloaded without dropping requests;
* :mod:`~padim_edge.serve.metrics`: Prometheus text for ``/metrics``;
* :mod:`~padim_edge.serve.app`: the routes, access log and lifespan;
* :mod:`~padim_edge.serve.cli`: the ``padim-serve`` command.
"""

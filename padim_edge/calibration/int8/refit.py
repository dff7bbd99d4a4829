"""Refit the Mahalanobis head's Gaussians on an INT8 backbone's own features (numpy + onnxruntime, no torch).

Why: the head whitens the embedding (``(x - mu)^T Sigma^-1 (x - mu)``), so Sigma^-1 amplifies whatever
the INT8 backbone adds in the embedding's low-variance directions. Statistics estimated on the float32
backbone do not know that noise; re-estimating mu and Sigma on the quantised backbone's own embeddings
puts it into Sigma, where the whitening no longer blows it up (issue 12: median anomaly-map error vs
float32 30% -> 10% on a dark-texture set, AUROC losses there mostly within 0.01).

How:

1. A temporary model is cut out of the quantised graph: every node the reduced embedding (the head's
   input, :func:`padim_edge.export.padim.head_io.head_layout`'s ``embedding``) depends on, with that
   tensor as its only output. The head itself (for WR50-Rd550 gigabytes of Sigma^-1) is left out, so the
   copy is small and the refit does not pay for a Mahalanobis head whose output it throws away. A copy
   past the protobuf limit is written with external data (:func:`padim_edge.onnx_files.save_model`) into
   a temporary folder; onnxruntime opens it from there.
2. The images stream through it on the CPU execution provider, one decoded ``uint8`` frame per run (the
   graph's own preprocessing resizes and crops; frames of a fixed-size TensorRT-target model are resized
   to its input size first, as :class:`padim_edge.calibration.int8.FrameReader` does), the embeddings
   folded into :class:`padim_edge.gaussian.GaussianStatistics` a few frames at a time: the same
   streaming float64 statistics the torch fit (:mod:`padim_edge.export.fit`) uses.
3. :meth:`~padim_edge.gaussian.GaussianStatistics.finalize` gives the mean and inverse covariance exactly
   as the fit does (``Sigma = scatter / (n - 1) + 0.01 I``, Cholesky, inverted in float64), and
   :func:`~padim_edge.export.padim.head_io.replace_head` installs them in the real model at the head's
   current precision and column blocks (an int8 or float16 head is rebuilt from the new float values).

Only PaDiM models have Gaussians: a PatchCore model (metadata ``method`` = ``patchcore``) has a memory
bank of patch features, not a mean and covariance, so :func:`refit_gaussians` refuses it with a
:class:`~padim_edge.calibration.errors.CalibrationError`. Its counterpart is :func:`refit_bank`: the same
embedding stream (:func:`embedding_batches`), its patch vectors fed to the fit's own streaming coreset
selection (:class:`~padim_edge.export.patchcore.bank.CoresetBank`, settings from the metadata), the
neighbour table rebuilt, and the nearest-neighbour head spliced in at the bank's current precision. The
INT8 variants run whichever the model's method calls for.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from tqdm import tqdm

from padim_edge import graph_names, metadata
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.modelio import save_model
from padim_edge.export.padim.head_io import HeadError, head_layout, replace_head
from padim_edge.gaussian import EPSILON, GaussianStatistics
from padim_edge.images import ImageError, load_image, resize_frame

#: Embeddings held before they are folded into the statistics (bounds memory: one WR50 frame is ~7 MB).
FRAMES_PER_UPDATE = 16


@dataclass
class RefitResult:
    """What a refit did.

    Attributes:
        images: Frames the Gaussians were estimated on.
        precision: Head precision the new constants were installed in.
        mean: ``[P, d]`` float32 means installed.
        inv_covariance: ``[P, d, d]`` float32 inverse covariances installed (before any head rounding).
    """

    images: int
    precision: str
    mean: np.ndarray
    inv_covariance: np.ndarray


def method_of(proto: onnx.ModelProto) -> str:
    """The model's method from its metadata (``padim`` when the key is absent, as in older models)."""
    props = {p.key: p.value for p in proto.metadata_props}
    return props.get(metadata.prop("method"), "padim")


def train_images(proto: onnx.ModelProto) -> int | None:
    """Images the model's Gaussians were fitted on (metadata ``train_images``), if recorded."""
    props = {p.key: p.value for p in proto.metadata_props}
    text = props.get(metadata.prop("train_images"))
    return None if text is None else int(text)


def is_padim(proto: onnx.ModelProto) -> bool:
    """Whether the model is a PaDiM model (per-patch Gaussians a refit can re-estimate)."""
    return method_of(proto) == "padim"


def embedding_model(proto: onnx.ModelProto, embedding: str) -> onnx.ModelProto:
    """A new model computing only ``embedding`` (its graph output) from ``proto``'s inputs.

    Every node ``embedding`` depends on is kept, in graph order (an ONNX graph is topologically sorted),
    with the initializers those nodes read; ``proto`` is not changed (the kept constants are copied).

    Raises:
        CalibrationError: No node produces ``embedding``.
    """
    graph = proto.graph
    producer = {o: index for index, node in enumerate(graph.node) for o in node.output if o}
    if embedding not in producer:
        raise CalibrationError(f"no node of the graph produces the embedding tensor '{embedding}'")
    keep: set[int] = set()
    stack = [embedding]
    while stack:
        index = producer.get(stack.pop())
        if index is None or index in keep:
            continue  # a graph input or an initializer, or already visited
        keep.add(index)
        node = graph.node[index]
        stack += [i for i in node.input if i]
        for attribute in node.attribute:  # outer-scope tensors a subgraph reads (none in exported graphs)
            for sub in [attribute.g, *attribute.graphs]:
                stack += [i for n in sub.node for i in n.input if i]
    nodes = [graph.node[i] for i in sorted(keep)]
    used = {i for n in nodes for i in n.input}
    for node in nodes:
        for attribute in node.attribute:
            for sub in [attribute.g, *attribute.graphs]:
                used |= {i for n in sub.node for i in n.input}
    cut = helper.make_graph(
        nodes,
        f"{graph.name}-embedding",
        [i for i in graph.input if i.name in used],
        [helper.make_tensor_value_info(embedding, TensorProto.FLOAT, None)],
        [t for t in graph.initializer if t.name in used],
    )
    model = helper.make_model(cut, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    return model


def _session(model: onnx.ModelProto, folder: Path) -> object:
    """The cut-out model opened on the CPU EP with the runtime's own session settings."""
    from padim_edge.runtime.session import open_session

    path = folder / "embedding.onnx"
    save_model(model, path, check=False)  # external data beside it when past the protobuf limit
    return open_session(path, device="cpu")


def embedding_batches(
    proto: onnx.ModelProto,
    embedding: str,
    images: list[Path],
    *,
    progress: bool = True,
    size: tuple[int, int] | None = None,
    desc: str = "int8 refit",
) -> Iterator[np.ndarray]:
    """Stream ``images`` through ``proto`` up to ``embedding``: float32 ``[k, D, grid, grid]`` batches.

    One frame per run, at most :data:`FRAMES_PER_UPDATE` frames per yielded batch, in ``images`` order.

    Raises:
        CalibrationError: No node produces ``embedding``, or an image cannot be decoded.
    """
    with tempfile.TemporaryDirectory(prefix="padim-refit-") as tmp:
        session = _session(embedding_model(proto, embedding), Path(tmp))
        pending: list[np.ndarray] = []
        with tqdm(total=len(images), desc=desc, unit="img", disable=not progress) as bar:
            for path in images:
                try:
                    frame = load_image(path)
                except ImageError as exc:
                    raise CalibrationError(str(exc)) from exc
                if size is not None:
                    frame = resize_frame(frame, size)
                (batch,) = session.run([embedding], {graph_names.INPUT: frame[None]})  # type: ignore[attr-defined]
                pending.append(batch)
                if len(pending) == FRAMES_PER_UPDATE:
                    yield np.concatenate(pending)
                    pending.clear()
                bar.update(1)
            if pending:
                yield np.concatenate(pending)
        del session


def embedding_statistics(
    proto: onnx.ModelProto,
    images: list[Path],
    *,
    progress: bool = True,
    size: tuple[int, int] | None = None,
) -> GaussianStatistics:
    """Stream ``images`` through ``proto`` up to the head's input and accumulate per-patch statistics.

    Args:
        proto: A padim-edge PaDiM model (any backbone precision).
        images: Image files (any sizes).
        progress: Show a progress bar.
        size: ``(H, W)`` of a fixed-size model: frames are resized to it first.

    Returns:
        The float64 statistics of the ``[N, d, grid, grid]`` embeddings (patches in row-major order).

    Raises:
        CalibrationError: No PaDiM head, or an image cannot be decoded.
    """
    try:
        layout = head_layout(proto)
    except HeadError as exc:
        raise CalibrationError(f"cannot refit the Gaussians: {exc}") from exc
    statistics = GaussianStatistics()
    for batch in embedding_batches(proto, layout.embedding, images, progress=progress, size=size):
        statistics.update(batch)
    return statistics


def refit_gaussians(
    proto: onnx.ModelProto,
    images: list[Path],
    *,
    progress: bool = True,
    size: tuple[int, int] | None = None,
    precision: str | None = None,
) -> RefitResult:
    """Re-estimate the head's Gaussians on ``proto``'s own embeddings and install them, in place.

    The statistics are those of the torch fit (float64, ``Sigma + 0.01 I``, Cholesky inverse), computed
    on the embeddings the model itself produces (its INT8 backbone included).

    Args:
        proto: A padim-edge PaDiM model (typically with a quantised backbone).
        images: Normal image files, ideally the training images; at least 2.
        progress: Show a progress bar.
        size: ``(H, W)`` of a fixed-size model: frames are resized to it first.
        precision: Head precision to install (default: the head's current one).

    Returns:
        A :class:`RefitResult`.

    Raises:
        CalibrationError: A PatchCore model (no Gaussians), no readable head, fewer than 2 images, an
            image that cannot be decoded, or embeddings that give no positive-definite covariance.
    """
    method = method_of(proto)
    if method != "padim":
        raise CalibrationError(
            f"the Gaussian refit applies to PaDiM models only; this is a {method} model (its memory bank "
            "is not a mean and covariance)"
        )
    if len(images) < 2:
        raise CalibrationError(f"refitting the Gaussians needs at least 2 images, got {len(images)}")
    try:
        precision = precision or head_layout(proto).precision
    except HeadError as exc:
        raise CalibrationError(f"cannot refit the Gaussians: {exc}") from exc
    statistics = embedding_statistics(proto, images, progress=progress, size=size)
    try:
        mean, inv_covariance = statistics.finalize(epsilon=EPSILON)
    except np.linalg.LinAlgError as exc:
        raise CalibrationError(
            f"the refitted covariance is not positive definite (NaN or infinite embeddings?): {exc}"
        ) from exc
    try:
        replace_head(proto, mean=mean, inv_covariance=inv_covariance, precision=precision)
    except (HeadError, ValueError) as exc:
        raise CalibrationError(f"cannot install the refitted Gaussians: {exc}") from exc
    return RefitResult(images=statistics.count, precision=precision, mean=mean, inv_covariance=inv_covariance)


@dataclass
class BankRefitResult:
    """What a PatchCore bank refit did.

    Attributes:
        images: Frames whose patch vectors the bank was selected from.
        precision: Bank precision the new bank was installed in.
        rows: Bank vectors before and after, ``(old, new)``.
        selection: The ``coreset_selection`` metadata of the new bank.
    """

    images: int
    precision: str
    rows: tuple[int, int]
    selection: dict[str, object]


def _bank_settings(proto: onnx.ModelProto) -> dict[str, object]:
    """The fit's coreset settings from the model's metadata (fraction, projection, seed, chunking, b)."""
    from padim_edge.export.patchcore.bank import DEFAULT_OVERSAMPLE

    props = {p.key: p.value for p in proto.metadata_props}
    names = ("coreset", "projection_dims", "seed", "neighbours", "coreset_selection")
    missing = [n for n in names if metadata.prop(n) not in props]
    if missing:
        raise CalibrationError(
            f"cannot refit the memory bank: the model's metadata lacks {', '.join(missing)}; re-export it "
            "with this padim-export"
        )
    selection = json.loads(props[metadata.prop("coreset_selection")])
    streaming = selection.get("mode") == "streaming"
    return {
        "fraction": float(props[metadata.prop("coreset")]),
        "projection_dims": int(props[metadata.prop("projection_dims")]),
        "seed": int(props[metadata.prop("seed")]),
        "chunk_vectors": int(selection["chunk_vectors"]) if streaming else None,
        "oversample": float(selection.get("oversample", DEFAULT_OVERSAMPLE))
        if streaming
        else DEFAULT_OVERSAMPLE,
        "neighbours": int(props[metadata.prop("neighbours")]),
    }


def refit_bank(
    proto: onnx.ModelProto,
    images: list[Path],
    *,
    progress: bool = True,
    size: tuple[int, int] | None = None,
) -> BankRefitResult:
    """Select PatchCore's memory bank again from ``proto``'s own patch features and install it, in place.

    The same selection as the fit (:class:`~padim_edge.export.patchcore.bank.CoresetBank` with the
    fraction, projection, seed and chunking in the model's metadata, then the ``N_b`` neighbour table),
    run on the embeddings the model itself produces: with an INT8 backbone, the bank then holds INT8
    features, which the INT8 test features are compared with. The bank keeps its precision (fp32, fp16 or
    int8); its size follows the images given (``round(fraction x vectors)``).

    Args:
        proto: A padim-edge PatchCore model (typically with a quantised backbone).
        images: Normal image files, ideally the training images; at least 2.
        progress: Show progress bars.
        size: ``(H, W)`` of a fixed-size model: frames are resized to it first.

    Raises:
        CalibrationError: Not a PatchCore model or no readable bank, metadata from an older export,
            fewer than 2 images, or an image that cannot be decoded.
    """
    from padim_edge.export.padim.head_io import splice_head
    from padim_edge.export.patchcore.bank import CoresetBank, patch_rows
    from padim_edge.export.patchcore.graph_head import nearest_neighbour_nodes
    from padim_edge.export.patchcore.head_io import bank_layout
    from padim_edge.export.patchcore.neighbours import neighbour_table

    if method_of(proto) != "patchcore":
        raise CalibrationError(
            f"the bank refit applies to PatchCore models only; this is a {method_of(proto)} model"
        )
    if len(images) < 2:
        raise CalibrationError(f"refitting the memory bank needs at least 2 images, got {len(images)}")
    try:
        layout = bank_layout(proto)
    except HeadError as exc:
        raise CalibrationError(f"cannot refit the memory bank: {exc}") from exc
    settings = _bank_settings(proto)
    bank = CoresetBank(
        layout.dims,
        fraction=settings["fraction"],
        projection_dims=settings["projection_dims"],
        seed=settings["seed"],
        chunk_vectors=settings["chunk_vectors"],
        oversample=settings["oversample"],
        progress=progress,
    )
    count = 0
    for batch in embedding_batches(
        proto, layout.embedding, images, progress=progress, size=size, desc="bank refit"
    ):
        count += len(batch)
        bank.add(patch_rows(batch))
    vectors = bank.select()
    table = neighbour_table(vectors, settings["neighbours"])
    nodes, inits, _, _ = nearest_neighbour_nodes(
        layout.embedding, vectors, table, grid=layout.grid, precision=layout.precision
    )
    splice_head(proto, layout.nodes, nodes, inits)
    selection = {"train_vectors": bank.seen, **bank.settings}
    return BankRefitResult(count, layout.precision, (layout.rows, len(vectors)), selection)

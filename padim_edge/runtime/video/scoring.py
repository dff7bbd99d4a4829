"""Scoring a batch of frames: one JSON record (and prediction) per frame; a bad frame fails alone."""

from __future__ import annotations

from typing import Any

from padim_edge.runtime.video.frame import Frame


def score_frames(model: Any, frames: list[Frame], batch_size: int) -> list[tuple[dict[str, Any], Any]]:
    """Score frames in one run: ``(record, prediction)`` per frame, in order.

    ``record`` is the frame's JSON line (``frame``, ``time``, ``score``, ``label``; or ``frame``,
    ``time``, ``error``); ``prediction`` the model's :class:`~padim_edge.runtime.model.Prediction`, or
    ``None`` for a frame that failed.

    A frame that failed to decode, or whose size differs from a fixed-size model's, gets an ``error``
    record; if the model still refuses the batch, frames are scored one by one so only the bad one fails.
    """
    size = model.info.input_size
    records: dict[int, tuple[dict[str, Any], Any]] = {}
    good: list[int] = []
    for k, frame in enumerate(frames):
        if frame.error is not None or frame.image is None:
            records[k] = _error_record(frame, frame.error or f"frame {frame.index} could not be decoded")
        elif size is not None and tuple(frame.image.shape[:2]) != tuple(size):
            height, width = frame.image.shape[:2]
            records[k] = _error_record(
                frame,
                f"frame {frame.index} is {height}x{width} (HxW); this model was built for "
                f"{size[0]}x{size[1]} frames (padim-export --target tensorrt --input-size); export one for "
                "this size or for any size (the default target)",
            )
        else:
            good.append(k)
    try:
        predictions = model.predict([frames[k].image for k in good], batch_size=batch_size) if good else []
        for k, pred in zip(good, predictions):
            records[k] = _record(frames[k], pred)
    except ValueError:  # InputError: score one by one so only the frame at fault fails
        for k in good:
            try:
                records[k] = _record(frames[k], model.predict(frames[k].image)[0])
            except ValueError as exc:
                records[k] = _error_record(frames[k], f"frame {frames[k].index}: {exc}")
    return [records[k] for k in range(len(frames))]


def _record(frame: Frame, pred: Any) -> tuple[dict[str, Any], Any]:
    label = None if pred.is_anomalous is None else ("anomalous" if pred.is_anomalous else "ok")
    score = round(float(pred.score), 6)
    return {"frame": frame.index, "time": round(frame.time, 3), "score": score, "label": label}, pred


def _error_record(frame: Frame, error: str) -> tuple[dict[str, Any], Any]:
    return {"frame": frame.index, "time": round(frame.time, 3), "error": error}, None

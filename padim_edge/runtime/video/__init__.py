"""Score video files, cameras, RTSP/HTTP streams and GStreamer pipelines (``padim-predict --video``).

The decoder is OpenCV (the ``[video]`` extra, ``opencv-python-headless``), chosen because one
``cv2.VideoCapture`` opens all four kinds of source: files and URLs through its FFmpeg backend, camera
indices through V4L2, and GStreamer pipeline strings, the Jetson norm, through the GStreamer backend that
JetPack's system OpenCV is built with (pip's wheels are not: on a Jetson use JetPack's ``python3-opencv``).

How a run flows (numpy + OpenCV + onnxruntime; no torch):

* a reader thread decodes frames (BGR -> RGB) into a bounded :class:`FrameBuffer`. A file is read
  whole, every frame (or every k-th with ``every``): the reader waits while the buffer is full. A live
  source (camera, URL, pipeline) is never waited on: when scoring falls behind, the oldest buffered
  frame is dropped and counted, so memory stays bounded and results stay recent;
* the calling thread takes whatever is buffered (up to ``batch_size`` frames), scores it in one run and
  writes one JSON line per frame (frame index, timestamp, score, label; or the frame's error),
  flushed as written, so Ctrl-C or a camera that disappears loses nothing already scored;
* optionally each scored frame's overlay (:func:`padim_edge.visualize.annotated_overlay`) goes into an
  annotated video, and a summary line on stderr gives frames/s, p50 / p99 latency, drops and anomalies.

A frame that cannot be decoded, or whose size differs from a fixed-size (``--target tensorrt``)
model's, is an error for that frame (its JSON line says why), not for the run. A source that cannot be
opened, does not answer within the timeout, or stops delivering is one :class:`VideoError` line, raised
after everything scored so far is written.

The modules: :mod:`.sources` (opening a SOURCE, decoding its frames), :mod:`.buffer` (the bounded
buffer and the reader thread), :mod:`.scoring` (a batch of frames to JSON records), :mod:`.writer` (the
JSON lines and ``--video-out``), :mod:`.summary` (:class:`VideoRun` and the live line), :mod:`.run`
(:func:`run_video`), :mod:`.command` (the ``--video`` options of ``padim-predict``); :mod:`.opencv`,
:mod:`.frame` and :mod:`.errors` hold what they share. Every name is importable from here.
"""

from __future__ import annotations

from padim_edge.runtime.video.buffer import FrameBuffer
from padim_edge.runtime.video.command import video_options
from padim_edge.runtime.video.errors import VideoError
from padim_edge.runtime.video.frame import Frame
from padim_edge.runtime.video.opencv import has_gstreamer, load_cv2, to_rgb
from padim_edge.runtime.video.run import run_video
from padim_edge.runtime.video.scoring import score_frames
from padim_edge.runtime.video.sources import (
    DEFAULT_TIMEOUT_S,
    MAX_BAD_FRAMES,
    OpenCVSource,
    SourceSpec,
    parse_source,
)
from padim_edge.runtime.video.summary import LATENCY_WINDOW, SUMMARY_EVERY_S, VideoRun
from padim_edge.runtime.video.writer import CODECS, FALLBACK_FPS, AnnotatedVideo, FrameLines

#: The names these helpers had before the package was split (tests and scripts import them).
_to_rgb, _has_gstreamer = to_rgb, has_gstreamer

__all__ = [
    "CODECS",
    "DEFAULT_TIMEOUT_S",
    "FALLBACK_FPS",
    "LATENCY_WINDOW",
    "MAX_BAD_FRAMES",
    "SUMMARY_EVERY_S",
    "AnnotatedVideo",
    "Frame",
    "FrameBuffer",
    "FrameLines",
    "OpenCVSource",
    "SourceSpec",
    "VideoError",
    "VideoRun",
    "has_gstreamer",
    "load_cv2",
    "parse_source",
    "run_video",
    "score_frames",
    "to_rgb",
    "video_options",
]

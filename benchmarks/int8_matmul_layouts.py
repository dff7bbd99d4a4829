"""The int8 head's MatMulInteger alone, in every layout tried, against one read of the same bytes.

Issue 9 leaves "the packed triangle, the scale layout and the op choice" open. The op that sets the
int8 head's time is the per-patch ``MatMulInteger``; this measures it on its own, batch 1, CPU EP,
:data:`compact_head_parts.THREADS` threads, at R18-Rd100 and WR50-Rd550 size (3136 patches, d 100 /
550), on random int8 data (the values do not change the work):

* ``act x W, triangle`` (the graph's layout): uint8 activations ``[P, 1, d - lo]`` x int8 panels
  ``[P, d - lo, cols]`` of the lower block triangle (blocks as the exporter cuts them);
* ``act x W, full``: one ``[P, d, d]`` square;
* ``W x act, triangle`` / ``full``: the weights as the uint8 left operand (zero point 128) and int8
  activations ``[P, rows, 1]`` on the right, so onnxruntime packs the one-column activation instead of
  the weight panel;
* ``act x W, G patches per GEMM``: ``G`` patches share one GEMM (``[G, d] x [d, G d]``, the diagonal
  blocks wanted, G times the arithmetic, G times fewer calls) -- whether per-call overhead matters;
* ``one read (ReduceMax)``: a uint8 ``ReduceMax`` over as many bytes as the triangle: what reading
  the weights once costs in onnxruntime on this machine, a floor for any layout.

Interleaved rounds (one session alive at a time, as in ``compact_head.py``); the median over rounds of
each round's median call, and its range.

Usage::

    python benchmarks/int8_matmul_layouts.py                  # R18 and WR50 sizes, ~5 minutes
    python benchmarks/int8_matmul_layouts.py --sizes r18 --rounds 3

Writes ``benchmarks/results/int8_matmul_layouts.{json,md}``.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compact_head_parts as parts

from padim_edge.bench.markdown import machine_line
from padim_edge.bench.system import machine_info
from padim_edge.export.padim.settings import DEFAULT_BLOCKS, PANEL_ALIGN, block_bounds

RESULTS = Path(__file__).resolve().parent / "results"
PATCHES = 56 * 56
#: name -> (dims, column blocks of the int8 head: the exporter's default / the WR50 goal rows' 6).
SIZES = {"r18": (100, DEFAULT_BLOCKS), "wr50": (550, 6)}
GROUPS = (2, 8)


def _model(nodes, inits, inputs, output_type) -> bytes:
    from onnx import helper

    graph = helper.make_graph(
        nodes, "op", [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
        [helper.make_tensor_value_info(nodes[-1].output[0], output_type, None)], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def layouts(dims: int, bounds: list[int], rng: np.random.Generator) -> dict[str, tuple[bytes, dict, int]]:
    """name -> (model, feed, weight bytes); every model ends in one tensor (a Concat of the parts)."""
    from onnx import TensorProto, helper, numpy_helper

    def weights(shape: tuple[int, ...], dtype: type) -> np.ndarray:
        low, high = (-127, 128) if dtype is np.int8 else (1, 256)
        return rng.integers(low, high, shape, dtype=dtype)

    def panels(weights_left: bool, cuts: list[int]) -> tuple[bytes, dict, int]:
        nodes, inits, outs, size = [], [], [], 0
        axis = 1 if weights_left else 2  # the activation's reduction axis
        act = "b" if weights_left else "a"
        inits += [
            numpy_helper.from_array(np.array([axis], np.int64), "axis"),
            numpy_helper.from_array(np.array(128 if weights_left else 64, np.uint8), "zp"),
        ]
        for i, (lo, hi) in enumerate(pairwise(cuts)):
            shape = (PATCHES, hi - lo, dims - lo) if weights_left else (PATCHES, dims - lo, hi - lo)
            q = weights(shape, np.uint8 if weights_left else np.int8)
            size += q.nbytes
            inits += [numpy_helper.from_array(q, f"q{i}")]
            rows = act
            if lo:
                inits += [
                    numpy_helper.from_array(np.array([lo], np.int64), f"lo{i}"),
                    numpy_helper.from_array(np.array([dims], np.int64), f"end{i}"),
                ]
                nodes.append(helper.make_node("Slice", [act, f"lo{i}", f"end{i}", "axis"], [f"r{i}"]))
                rows = f"r{i}"
            pair = ([f"q{i}", rows, "zp"]) if weights_left else ([rows, f"q{i}", "zp"])
            nodes.append(helper.make_node("MatMulInteger", pair, [f"t{i}"]))
            outs.append(f"t{i}")
        nodes.append(helper.make_node("Concat", outs, ["t"], axis=1 if weights_left else 2))
        if weights_left:
            feed = {"b": rng.integers(-63, 64, (PATCHES, dims, 1), dtype=np.int8)}
            return _model(nodes, inits, [("b", TensorProto.INT8)], TensorProto.INT32), feed, size
        feed = {"a": rng.integers(1, 128, (PATCHES, 1, dims), dtype=np.uint8)}
        return _model(nodes, inits, [("a", TensorProto.UINT8)], TensorProto.INT32), feed, size

    def grouped(group: int) -> tuple[bytes, dict, int]:
        q = weights((PATCHES // group, dims, group * dims), np.int8)
        inits = [numpy_helper.from_array(q, "q"), numpy_helper.from_array(np.array(64, np.uint8), "zp")]
        node = helper.make_node("MatMulInteger", ["a", "q", "zp"], ["t"])
        feed = {"a": rng.integers(1, 128, (PATCHES // group, group, dims), dtype=np.uint8)}
        return _model([node], inits, [("a", TensorProto.UINT8)], TensorProto.INT32), feed, q.nbytes

    out = {
        "act x W, triangle (the graph's)": panels(False, bounds),
        "act x W, full": panels(False, [0, dims]),
        "W x act, triangle": panels(True, bounds),
        "W x act, full": panels(True, [0, dims]),
    }
    for group in GROUPS:
        out[f"act x W, {group} patches per GEMM (full)"] = grouped(group)
    triangle = out["act x W, triangle (the graph's)"][2]
    node = helper.make_node("ReduceMax", ["w"], ["m"], keepdims=0)
    feed = {"w": rng.integers(0, 256, (PATCHES, triangle // PATCHES), dtype=np.uint8)}
    out["one read of the triangle's bytes (ReduceMax)"] = (
        _model([node], [], [("w", TensorProto.UINT8)], TensorProto.UINT8), feed, feed["w"].nbytes,
    )  # fmt: skip
    return out


def measure(name: str, *, rounds: int, reps: int, seed: int = 0) -> dict[str, Any]:
    """One size: every layout timed in interleaved rounds."""
    import onnxruntime as ort

    from padim_edge.runtime.session import session_options

    dims, blocks = SIZES[name]
    bounds = block_bounds(dims, blocks, align=PANEL_ALIGN["int8"])
    cases = layouts(dims, bounds, np.random.default_rng(seed))

    def opener(model: bytes, feed: dict) -> parts.Runner:
        session = ort.InferenceSession(
            model, session_options(parts.THREADS), providers=["CPUExecutionProvider"]
        )
        return (lambda: session.run(None, feed)), (lambda: None)

    openers = {label: (lambda m=m, f=f: opener(m, f)) for label, (m, f, _) in cases.items()}
    timing = parts.interleaved(openers, rounds=rounds, reps=reps, log=lambda m: print(m, file=sys.stderr))
    rows = {
        label: {"bytes": size, **parts.spread(timing["ms"][label])} for label, (_, _, size) in cases.items()
    }
    return {
        "patches": PATCHES, "dims": dims, "bounds": bounds, "reps": reps, "rows": rows,
        "background": timing["background"],
    }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    lines = [
        "# The int8 head's MatMulInteger alone: layouts against one read of the bytes",
        "",
        f"**Machine:** {machine_line(result['machine'])}.",
        f"**Run:** `{result['command']}`, {result['finished']}; CPU EP, {result['threads']} threads, "
        f"batch 1, {result['rounds']} interleaved rounds; median over rounds of each round's median call "
        "[min-max].",
        "",
    ]
    for name, size in result["sizes"].items():
        lines += [
            f"## {name.upper()} size: {size['patches']} patches, d {size['dims']}, blocks {size['bounds']} "
            f"({size['reps']} calls a round)",
            "",
            "| layout | MB | ms [range] | GB/s | / one read |",
            "|---|---:|---:|---:|---:|",
        ]
        floor = size["rows"]["one read of the triangle's bytes (ReduceMax)"]["median"]
        for label, row in size["rows"].items():
            rate = row["bytes"] / row["median"] / 1e6
            spread = f"{row['median']:.2f} [{row['min']:.2f}-{row['max']:.2f}]"
            times = row["median"] / floor
            lines.append(f"| {label} | {row['bytes'] / 1e6:.1f} | {spread} | {rate:.1f} | {times:.2f}x |")
        lines.append("")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--sizes", default="r18,wr50", show_default=True, help="Comma-separated: r18, wr50.")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--reps",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Calls per round (WR50: a quarter).",
)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=RESULTS)
def main(sizes: str, rounds: int, reps: int, output: Path) -> None:
    """Time the int8 head's MatMulInteger in each layout; write int8_matmul_layouts.{json,md}."""
    names = [s.strip() for s in sizes.split(",") if s.strip()]
    if set(names) - set(SIZES):
        raise click.BadParameter(f"unknown sizes {sorted(set(names) - set(SIZES))}; choose from r18, wr50")
    result: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join(["python", "benchmarks/int8_matmul_layouts.py", *sys.argv[1:]]),
        "threads": parts.THREADS,
        "rounds": rounds,
        "reps": reps,
        "sizes": {
            n: measure(n, rounds=rounds, reps=reps if n == "r18" else max(1, reps // 4)) for n in names
        },
    }
    result["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    output.mkdir(parents=True, exist_ok=True)
    (output / "int8_matmul_layouts.json").write_text(json.dumps(result, indent=1) + "\n")
    (output / "int8_matmul_layouts.md").write_text(render(result) + "\n")
    print(render(result))


if __name__ == "__main__":
    main()

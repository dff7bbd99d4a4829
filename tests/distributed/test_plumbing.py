"""The distributed package without a cluster: import hygiene, addresses, shards, the reduce tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from padim_edge.distributed.cluster import is_address, parse_address
from padim_edge.distributed.commands import split_model_argument


def test_local_paths_never_import_ray(small_onnx: Path, train_dir: Path) -> None:
    """padim-predict and the fit behind padim-export without --ray, and the thin package, leave Ray alone."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import padim_edge.distributed, padim_edge.distributed.cluster, padim_edge.distributed.commands\n"
        "import padim_edge.export.cli\n"
        "from padim_edge.export.pipeline import build_module, fit\n"
        "from padim_edge.images import list_images\n"
        "from padim_edge.runtime.cli import main as predict_main\n"
        f"r = CliRunner().invoke(predict_main, [{str(small_onnx)!r}, {str(train_dir)!r}, '-q'])\n"
        "assert r.exit_code == 0, r.output\n"
        "model, _ = build_module('r18', dims=8, resize=40, crop=32, random_init=True)\n"
        f"fit(model, list_images({str(train_dir)!r}), device='cpu', progress=False)\n"
        "print('LOADED', [n for n in ('ray', 'pyarrow') if n in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in out.stdout


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("local", True),
        ("auto", True),
        ("ray://head.example:10001", True),
        ("10.0.0.5:6379", True),
        ("[::1]:6379", True),
        ("model.onnx", False),
        ("images/", False),
        ("ray://nohost", False),
    ],
)
def test_cluster_addresses(text: str, ok: bool) -> None:
    assert is_address(text) is ok
    if not ok:
        with pytest.raises(ValueError, match=r"is not a cluster address: '--ray' alone starts"):
            parse_address(text)


def test_predict_ray_flag_gives_the_model_argument_back() -> None:
    """`padim-predict --ray MODEL PATH...`: click hands MODEL to --ray; it is the model, --ray is local."""
    assert split_model_argument("m.onnx", Path("a"), (Path("b"),)) == (
        "local",
        Path("m.onnx"),
        (Path("a"), Path("b")),
    )
    assert split_model_argument("auto", Path("m.onnx"), (Path("a"),)) == (
        "auto",
        Path("m.onnx"),
        (Path("a"),),
    )
    assert split_model_argument(None, Path("m.onnx"), (Path("a"),)) == (None, Path("m.onnx"), (Path("a"),))


def test_split_and_tree_reduce_shapes() -> None:
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from padim_edge.distributed.fit import split, tree_depth, tree_reduce

    paths = [Path(f"{i}.png") for i in range(11)]
    shards = split(paths, 4)
    assert [len(s) for s in shards] == [3, 3, 3, 2] and [p for s in shards for p in s] == paths
    assert [len(s) for s in split(paths[:2], 5)] == [1, 1]  # never an empty shard
    # whole batches of the local fit (5, 5, 1): every image in the same batch as locally
    assert [len(s) for s in split(paths, 2, batch_size=5)] == [10, 1]
    assert [len(s) for s in split(paths, 9, batch_size=5)] == [5, 5, 1]
    merges: list[tuple[str, str]] = []

    def merge(a: str, b: str) -> str:
        merges.append((a, b))
        return f"({a}+{b})"

    assert tree_reduce(list("abcde"), merge) == "(((a+b)+(c+d))+e)"
    assert len(merges) == 4 and tree_depth(5) == 3 and tree_depth(1) == 0


def test_shards_follow_batches_and_names_follow_content() -> None:
    pytest.importorskip("pyarrow", reason="the [ray] extra is not installed")
    from padim_edge.distributed.scoring import plan_shards

    files = [Path(f"/d/{i}.png") for i in range(10)]
    keys = [f"{i}.png" for i in range(10)]
    shards = plan_shards(files, keys, shard_size=3, batch_size=4, identity="model-a")
    assert [len(s.keys) for s in shards] == [4, 4, 2]  # rounded up to whole batches: same batches as local
    again = plan_shards(files, keys, shard_size=3, batch_size=4, identity="model-a")
    other = plan_shards(files, keys, shard_size=3, batch_size=4, identity="model-b")
    assert [s.name for s in again] == [s.name for s in shards]
    assert not {s.name for s in other} & {s.name for s in shards}
    assert shards[0].name.startswith("part-00000-") and shards[0].name.endswith(".parquet")


def test_a_shard_whose_model_fails_names_its_files(train_dir: Path) -> None:
    """The actor reports a failing shard as an error row naming the batch's files; it does not raise."""
    pytest.importorskip("pyarrow", reason="the [ray] extra is not installed")
    import json
    import types

    import numpy as np

    from padim_edge.distributed.scoring import ShardScorer

    class Broken:
        info = types.SimpleNamespace(input_size=None, threshold=None)

        def predict(self, frames, batch_size):
            raise RuntimeError("CUDA error: out of memory")

    scorer = ShardScorer.__new__(ShardScorer)
    scorer.model, scorer.batch_size, scorer.maps = Broken(), 2, False
    files = sorted(str(p) for p in train_dir.iterdir())[:2]
    out = scorer(
        {
            "index": np.array([3]),
            "name": np.array(["part-00003-x.parquet"]),
            "paths": np.array([json.dumps(files)]),
            "keys": np.array([json.dumps(["a.png", "b.png"])]),
        }
    )
    assert out["parquet"] == [b""] and out["index"] == [3]
    assert "scoring failed on the batch" in out["error"][0] and files[0] in out["error"][0]
    assert "CUDA error: out of memory" in out["error"][0]

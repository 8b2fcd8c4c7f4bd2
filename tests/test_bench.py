import argparse
import json

import pytest

from src import bench

TINY = [
    "--d-model",
    "16",
    "--n-heads",
    "2",
    "--layers",
    "1",
    "--d-ff",
    "32",
    "--vocab-size",
    "40",
    "--batch-size",
    "4",
    "--seq-len",
    "8",
    "--new-tokens",
    "4",
    "--repeats",
    "3",
    "--steps",
    "1",
    "--threads",
    "1",
]


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args([*TINY, *extra])


@pytest.mark.parametrize("norm_flag", [[], ["--norm-first"]], ids=["post-norm", "pre-norm"])
def test_json_report_has_both_contests_and_identical_starting_functions(norm_flag):
    report = json.loads(bench.report(_args("--json", *norm_flag)))
    assert report["settings"]["norm_first"] == bool(norm_flag)
    # ours and the nn.Transformer wrapper start as the same function
    assert report["max_abs_logit_diff"] < 1e-4
    for contest, names in (
        ("training_tokens_per_s", ("ours", "torch")),
        ("decoding_tokens_per_s", ("cached", "uncached")),
    ):
        for name in names:
            assert len(report[contest][name]["repeats"]) == 3
            assert report[contest][name]["best"] >= report[contest][name]["median"] > 0
    assert set(report["ratios"]) == set(report["meets_targets"]) == {"training", "decoding"}


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = bench.torch.get_num_threads()  # --threads sets a process-wide setting
    yield
    bench.torch.set_num_threads(threads)


def test_table_report():
    out = bench.report(_args())
    assert "train: ours (A) vs nn.Transformer (B)" in out and "greedy: cached (A) vs uncached (B)" in out
    assert "post-norm" in out and "1 threads" in out


def test_tiny_batch_keeps_every_sentence_nonempty():
    src, tgt_in, labels = bench.make_batch(_args(), bench.torch.Generator().manual_seed(0))
    assert src.shape == tgt_in.shape == labels.shape == (4, 8)
    assert (src[:, :4] != bench.PAD_ID).all() and (tgt_in[:, 0] == bench.BOS_ID).all()


def test_the_command_line_entry_point_runs_the_bench(capsys):
    from src.main import build_parser

    args = build_parser().parse_args(["bench", *TINY, "--json"])
    assert args.handler(args) == 0
    assert "ratios" in json.loads(capsys.readouterr().out)

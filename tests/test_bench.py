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


def test_both_contestants_count_the_same_step_flops_and_attention_is_in_them():
    """Same function, same FLOPs; attention's T x T products make the count grow faster than the length."""
    flops = {}
    for seq_len in (8, 16):
        args = _args("--seq-len", str(seq_len))
        ours, reference = bench.build_contestants(args)
        batch = bench.make_batch(args, bench.torch.Generator().manual_seed(0))
        counts = [
            bench.step_flops(m, bench.torch.optim.AdamW(m.parameters()), batch) for m in (ours, reference)]
        assert counts[0] == counts[1] > 0
        flops[seq_len] = counts[0]
    assert flops[16] > 2 * flops[8]


def test_mfu_is_achieved_flops_over_the_given_peak_and_absent_without_one():
    with_peak = json.loads(bench.report(_args("--json", "--peak-tflops", "0.5")))["mfu"]
    for name in ("ours", "torch"):
        assert with_peak["utilisation"][name] == pytest.approx(with_peak["achieved_tflops"][name] / 0.5)
        assert with_peak["achieved_tflops"][name] > 0
    assert json.loads(bench.report(_args("--json")))["mfu"]["utilisation"] == {"ours": None, "torch": None}
    assert "MFU needs --peak-tflops" in bench.report(_args())


@pytest.mark.skipif(bench.torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        bench.report(_args("--device", "cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not bench.torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_bench_reports_mfu_for_a_known_gpu():
    report = json.loads(bench.report(_args("--json", "--device", "cuda")))
    assert report["settings"]["device"] == "cuda" and report["max_abs_logit_diff"] < 1e-2
    assert report["mfu"]["achieved_tflops"]["ours"] > 0


@pytest.mark.slow  # inductor compiles the forward and backward: about a minute on 2 cores
def test_compile_adds_a_compiled_contestant_on_the_eager_loss_curve():
    """``bench --compile``: a third training contestant and its compile time apart; and compiled training is
    exact enough to be worth timing: 20 steps of the same model, eager and compiled, within 1e-4."""
    import copy

    import torch.nn.functional as F

    from src.config.model import ModelConfig
    from src.models.transformer import build_model

    report = json.loads(bench.report(_args("--json", "--compile")))
    assert len(report["training_tokens_per_s"][bench.COMPILED]["repeats"]) == 3
    assert report["ratios"]["training_compiled"] > 0 and report["compile_first_step_s"] > 0
    assert report["mfu"]["step_flops"][bench.COMPILED] == report["mfu"]["step_flops"]["ours"]
    assert "train: ours compiled (A) vs torch (B)" in bench._table(report)

    bench.torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32, dropout=0.0,
                      attention_dropout=0.0, max_positions=8)
    eager = build_model(cfg, 40, 40, bench.PAD_ID)
    twin = copy.deepcopy(eager)
    compiled = bench.torch.compile(twin)
    src, tgt_in, labels = bench.make_batch(_args(), bench.torch.Generator().manual_seed(0))
    curves = []
    for model, params in ((eager, eager.parameters()), (compiled, twin.parameters())):
        optimizer = bench.torch.optim.AdamW(params, lr=1e-3)
        losses = []
        for _ in range(20):
            logits = model(src, tgt_in).flatten(0, 1)
            loss = F.cross_entropy(logits, labels.flatten(), ignore_index=bench.PAD_ID)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        curves.append(losses)
    assert curves[0][-1] < curves[0][0]  # it trains
    assert max(abs(a - b) for a, b in zip(*curves)) < 1e-4

"""``bench finetune`` on a tiny random BERT folder: it trains both models on the same batches of reviews,
both with and without length bucketing, and both see identical inputs (the same first-step logits and
loss)."""

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from src import bench_finetune
from src.main import build_parser
from tests.models.bert_folder import WORDS, save_bert_folder

pytestmark = pytest.mark.timeout(180, method="thread")


@pytest.fixture(scope="module")
def folder_and_reviews(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random 2-layer BERT saved with ``save_pretrained`` (and a WordPiece tokenizer), and an IMDB-style
    CSV of reviews of 3 to 60 of its words."""
    root = tmp_path_factory.mktemp("bench_finetune")
    folder = save_bert_folder(root / "bert", layers=2, width=32, positions=128)
    rng, words = random.Random(0), WORDS.split()
    rows = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 60))) for _ in range(40)]
    csv = root / "reviews.csv"
    csv.write_text("review,sentiment\n" + "".join(f"{text},{('negative', 'positive')[i % 2]}\n"
                                                  for i, text in enumerate(rows)), encoding="utf-8")
    return folder, csv


def bench_args(folder: Path, csv: Path, *extra: str):
    argv = ["bench", "finetune", "--init-from", str(folder), "--imdb-path", str(csv), "--reviews", "24",
            "--batch-size", "4", "--max-tokens", "128", "--max-len", "64", "--repeats", "2", "--threads", "1",
            *extra]
    return build_parser(argv).parse_args(argv)


@pytest.fixture(scope="module")
def result(folder_and_reviews) -> dict:
    """``bench finetune --json`` as the command runs it (its handler, in process), parsed."""
    import contextlib
    import io

    args = bench_args(*folder_and_reviews, "--json")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.handler(args) == 0
    return json.loads(out.getvalue())


def test_bench_trains_both_models_on_the_same_batches_with_and_without_bucketing(result):
    assert set(result["throughput"]) == {"ours padded", "hf padded", "ours bucketed", "hf bucketed"}
    assert all(t["reviews_per_s"] > 0 and t["tokens_per_s"] > t["reviews_per_s"]
               for t in result["throughput"].values())
    data = result["data"]
    assert data["reviews"] == 24 and data["batches"]["padded"] == 6  # 24 reviews, 4 a batch
    # bucketing packs reviews of like length: less padding than file order on the same reviews
    assert data["padding_efficiency"]["bucketed"] > data["padding_efficiency"]["padded"]
    t, r = result["throughput"], result["ratios"]
    assert r["padded"] == pytest.approx(t["ours padded"]["reviews_per_s"] / t["hf padded"]["reviews_per_s"])
    assert r["ours_bucketed_vs_hf_padded"] == pytest.approx(
        t["ours bucketed"]["reviews_per_s"] / t["hf padded"]["reviews_per_s"])
    assert set(result["cpu_time_ratios"]) == set(r) and all(v > 0 for v in result["cpu_time_ratios"].values())
    assert result["settings"]["dropout"] == 0.1 and result["settings"]["attention_dropout"] == 0.1


def test_both_models_see_identical_inputs_the_same_first_step_loss(result):
    """Dropout off, on every batch of both batchings: the same logits and loss to 1e-5."""
    assert result["max_abs_first_step_diff"]["loss"] < 1e-5
    assert result["max_abs_first_step_diff"]["logits"] < 1e-5


def test_the_first_step_check_sees_a_difference(folder_and_reviews):
    """The check can fail: one changed weight, or one changed token, shows in it."""
    args = bench_args(*folder_and_reviews)
    reviews = bench_finetune.read_reviews(args)
    ours, hf = bench_finetune.build_models(args, 2)
    models = {"ours": ours, "hf": hf}
    batches = reviews.batches("padded", torch.device("cpu"))
    assert bench_finetune.first_step_differences(models, batches)["logits"] < 1e-5
    with torch.no_grad():
        ours.head.out.bias.add_(0.01)
    assert bench_finetune.first_step_differences(models, batches)["logits"] > 5e-3


def test_table_names_every_contest(monkeypatch):
    canned = json.loads(json.dumps(SAMPLE))
    monkeypatch.setattr(bench_finetune, "run", lambda args: canned)
    table = bench_finetune.report(SimpleNamespace(json=False))
    assert "padded: 16 reviews a batch (efficiency 0.79)" in table
    assert "bucketed: <= 4096 tokens (efficiency 0.99)" in table
    assert "ours bucketed vs hf padded (same reviews)" in table and "1.80" in table
    assert "padded 1.55, bucketed 1.12, ours bucketed vs hf padded 1.70" in table
    assert "target: ours / hf >= 1.3" in table


SAMPLE = {
    "settings": {"init_from": "/x/all-minilm-l6-v2", "reviews": 64, "batch_size": 16, "max_tokens": 4096,
                 "max_len": 256, "repeats": 5, "lr": 5e-5, "device": "cpu", "seed": 0, "threads": 2,
                 "torch": "2.13", "hf_attention": "sdpa", "dropout": 0.1, "attention_dropout": 0.1},
    "data": {"reviews": 64, "real_tokens": 12900, "batches": {"padded": 4, "bucketed": 4},
             "padding_efficiency": {"padded": 0.79, "bucketed": 0.99}},
    "max_abs_first_step_diff": {"logits": 1e-7, "loss": 0.0},
    "throughput": {name: {"reviews_per_s": value, "tokens_per_s": value * 201} for name, value in
                   (("ours padded", 6.0), ("hf padded", 4.0), ("ours bucketed", 7.2), ("hf bucketed", 5.0))},
    "ratios": {"padded": 1.5, "bucketed": 1.44, "ours_bucketed_vs_hf_padded": 1.8},
    "cpu_time_ratios": {"padded": 1.55, "bucketed": 1.12, "ours_bucketed_vs_hf_padded": 1.7},
    "target": 1.3,
}


def test_our_model_drops_out_where_bert_does(folder_and_reviews):
    """Train mode compares the same function only if the dropouts sit where BERT's do: on the embeddings,
    the attention weights and each sublayer's output, and not inside the feed-forward (BertIntermediate)."""
    args = bench_args(*folder_and_reviews)
    ours, hf = bench_finetune.build_models(args, 2)
    layer = ours.encoder.layers[0]
    assert layer.feed_forward.dropout.p == 0.0
    assert layer.dropout.p == ours.embeddings.dropout.p == hf.config.hidden_dropout_prob == 0.1
    assert layer.self_attn.dropout_p == hf.config.attention_probs_dropout_prob == 0.1


def test_a_missing_folder_fails_in_one_line_before_any_work(tmp_path, capsys):
    from loguru import logger

    args = bench_args(tmp_path / "absent", tmp_path / "no.csv")
    messages: list[str] = []
    sink = logger.add(messages.append, level="ERROR", format="{message}")
    try:
        assert args.handler(args) == 1
    finally:
        logger.remove(sink)
    assert capsys.readouterr().out == ""
    (message,) = messages
    assert "absent: no Hugging Face folder there (expected config.json" in message
    assert message.count("\n") == 1  # loguru ends the line

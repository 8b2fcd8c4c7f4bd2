"""``bench``'s arguments, apart from ``src/bench.py`` (which imports torch), so that ``bench --help`` is
instant."""

import argparse

from src.arguments import POSITIVE_INT, POSITIVE_NUMBER, SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--repeats", type=POSITIVE_INT, default=5, help="timed repeats per contestant (median reported)"
    )
    parser.add_argument("--steps", type=POSITIVE_INT, default=5, help="training steps per timed repeat")
    parser.add_argument(
        "--norm-first", action="store_true", help="pre-norm (default: post-norm, the paper's)"
    )
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=32)
    parser.add_argument("--seq-len", type=POSITIVE_INT, default=64, help="source and target length (tokens)")
    parser.add_argument(
        "--new-tokens", type=POSITIVE_INT, default=64, help="tokens generated per sentence when decoding"
    )
    parser.add_argument("--threads", type=POSITIVE_INT, default=None,
                        help="torch intra-op threads (default: torch's)")
    parser.add_argument("--vocab-size", type=POSITIVE_INT, default=8000)
    parser.add_argument("--d-model", type=POSITIVE_INT, default=256)
    parser.add_argument("--n-heads", type=POSITIVE_INT, default=4)
    parser.add_argument("--layers", type=POSITIVE_INT, default=3, help="encoder and decoder layers each")
    parser.add_argument("--d-ff", type=POSITIVE_INT, default=1024)
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where both contestants run (cuda: bf16 autocast for training, and MFU)")
    parser.add_argument("--compile", action="store_true",
                        help="also time our model under torch.compile (inductor) in the training contest; "
                             "its compile time is reported apart")
    parser.add_argument("--peak-tflops", type=POSITIVE_NUMBER, default=None,
                        help="the device's peak dense FLOP/s in TFLOP/s, for MFU (default: known GPUs only)")


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """``bench finetune``'s arguments (``src/bench_finetune.py``)."""
    add = parser.add_argument
    add("--init-from", required=True, metavar="FOLDER",
        help="a Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json), e.g. "
             "~/.cache/stepwise-transformers/all-minilm-l6-v2")
    add("--imdb-path", default=None, help="the IMDB CSV (default: the one .ci/install extracts)")
    add("--reviews", type=POSITIVE_INT, default=64, help="reviews per timed pass (the first ones kept)")
    add("--batch-size", type=POSITIVE_INT, default=16, help="reviews a batch, padded batches")
    add("--max-tokens", type=POSITIVE_INT, default=4096, help="padded tokens a batch, bucketed batches")
    add("--max-len", type=POSITIVE_INT, default=256,
        help="tokens a review is cut to, [CLS] and [SEP] included")
    add("--max-chars", type=POSITIVE_INT, default=20000, help="longer reviews are dropped, as data.max_chars")
    add("--repeats", type=POSITIVE_INT, default=5, help="timed passes per contestant (median reported)")
    add("--lr", type=POSITIVE_NUMBER, default=5e-5, help="AdamW learning rate")
    add("--dropout", type=_rate, default=None, help="hidden dropout of both (default: config.json's)")
    add("--attention-dropout", type=_rate, default=None,
        help="attention-weight dropout of both (default: config.json's)")
    add("--threads", type=POSITIVE_INT, default=None, help="torch intra-op threads (default: torch's)")
    add("--device", default="cpu", choices=["cpu", "cuda"])
    add("--seed", type=SEED, default=0)
    add("--json", action="store_true", help="print one JSON object instead of a table")


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a dropout rate in [0, 1), got {text}")
    return value

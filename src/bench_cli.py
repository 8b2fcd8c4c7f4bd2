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

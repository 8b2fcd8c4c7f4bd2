"""``evaluate RUN --split FILE`` scores every family on a file of its own kind, into the run folder
(issue 26).

Untrained tiny checkpoints of each family (tests/export/conftest.py) sit in a run folder's
``train/checkpoints``; the data files sit elsewhere, and nothing may be written beside them.
"""

import gzip
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from loguru import logger

from src.data.fashion_mnist import CLASS_NAMES, IMAGE_MAGIC, LABEL_MAGIC
from src.main import main
from tests.export.conftest import make_checkpoint

IMAGE_STATS = {"mean": [0.286], "std": [0.353]}
REVIEWS = [("A wonderful film, I loved it.", "positive"), ("Dull and far too long.", "negative"),
           ("<br />The best acting of the year!", "positive"), ("I want those two hours back.", "negative"),
           ("Fine, if a bit slow.", "positive")]
VERSE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
         "First Citizen:\nYou are all resolved.\n")


def in_run(root: Path, config: str, sides: tuple[str, ...], **kwargs) -> Path:
    """A checkpoint at ``root/run/train/checkpoints/best.pt`` of a run folder (it holds status.json)."""
    checkpoint = make_checkpoint(root, config, sides, **kwargs)
    run = root / "run"
    (run / "status.json").write_text(json.dumps({"status": "completed", "steps": {}}), encoding="utf-8")
    target = run / "train" / "checkpoints" / "best.pt"
    target.parent.mkdir(parents=True)
    shutil.move(checkpoint, target)
    return target


@pytest.fixture
def errors():
    """The ERROR lines the command logs (its one line on the console)."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="ERROR")
    yield lines
    logger.remove(sink)


def evaluate(capsys, checkpoint: Path, split: Path, *extra: str) -> tuple[int, str, dict | None]:
    """``evaluate CHECKPOINT --split SPLIT``: exit status, console output, the metrics JSON it wrote (if
    any)."""
    status = main(["evaluate", str(checkpoint), "--split", str(split), "--device", "cpu", *extra])
    out = capsys.readouterr().out
    written = sorted((checkpoint.parents[2] / "evaluate").glob("metrics_file-*.json"))
    return status, out, json.loads(written[-1].read_text()) if written else None


def only_the_data(folder: Path, names: set[str]) -> None:
    """Nothing was written beside the user's data."""
    assert {p.name for p in folder.iterdir()} == names


def test_a_language_model_is_scored_on_plain_text_in_bits_per_character(tmp_path, capsys):
    checkpoint = in_run(tmp_path / "lm", "config/lm_tiny.yaml", ("text",))
    data = tmp_path / "data"
    data.mkdir()
    (data / "play.txt").write_text(VERSE, encoding="utf-8")
    status, out, metrics = evaluate(capsys, checkpoint, data / "play.txt")
    assert status == 0 and "bpc:" in out and str(checkpoint.parents[2] / "evaluate") in out
    documents = VERSE.strip("\n").split("\n\n")  # three speeches, their line breaks kept
    assert metrics["n_characters"] == sum(map(len, documents)) + len(documents) - 1  # + one <s> per boundary
    nats = metrics["bpc"] * metrics["n_characters"] * math.log(2)
    # every token after the first
    assert nats == pytest.approx(metrics["loss"] * (metrics["n_tokens"] - 1), rel=1e-5)
    assert metrics["family"] == "decoder_lm" and metrics["split"] == str((data / "play.txt").resolve())
    only_the_data(data, {"play.txt"})
    _, _, first = evaluate(capsys, checkpoint, data / "play.txt", "--max-sentences", "1")
    assert first["n_characters"] == len(documents[0])
    # the run's own test stream, as its tokenize step stores it, scores what the same text as a file does
    from src.data.tokenizer import load_tokenizer
    from src.tasks.language_modeling.task import SEPARATOR, encode_stream

    tokenize = checkpoint.parents[2] / "tokenize"
    tokenize.mkdir()
    ids, characters = encode_stream(load_tokenizer(tmp_path / "lm" / "tokenizer.json"),
                                    SEPARATOR.join(documents))
    np.save(tokenize / "test_ids.npy", np.asarray(ids, dtype=np.int32))
    (tokenize / "stream.json").write_text(json.dumps({"test": {"characters": characters}}), encoding="utf-8")
    assert main(["evaluate", str(checkpoint), "--device", "cpu"]) == 0
    assert f"bpc:         {metrics['bpc']:.4f}" in capsys.readouterr().out


def test_block_size_scores_a_language_model_in_windows_of_that_length(tmp_path, capsys, errors):
    """``--block-size N`` cuts the stream into windows of N tokens, each read from position 0 (what the
    extrapolation table measures); past ``model.max_positions``, and for other families, one line."""
    import torch.nn.functional as F

    from src.data.tokenizer import load_tokenizer
    from src.inference import load_for_inference
    from src.tasks.language_modeling.task import SEPARATOR, encode_stream

    checkpoint = in_run(tmp_path / "lm", "config/lm_tiny.yaml", ("text",))  # block 32, max_positions 64
    data = tmp_path / "data"
    data.mkdir()
    (data / "play.txt").write_text(VERSE * 3, encoding="utf-8")
    ids, _ = encode_stream(load_tokenizer(tmp_path / "lm" / "tokenizer.json"),
                           SEPARATOR.join((VERSE * 3).strip("\n").split("\n\n")))
    model = load_for_inference(checkpoint, "cpu").model
    by_size = {}
    for size in (32, 48, 64):
        status, out, metrics = evaluate(capsys, checkpoint, data / "play.txt", "--block-size", str(size))
        assert status == 0 and metrics["block_size"] == size and f"windows of {size}" in out
        stream = torch.tensor(ids)
        nats = 0.0
        with torch.no_grad():  # by hand: window after window, each predicting its own next tokens
            for start in range(0, len(ids) - 1, size):
                window = stream[start:start + size + 1]
                nats += F.cross_entropy(model(window[None, :-1])[0], window[1:], reduction="sum").item()
        assert metrics["loss"] * (metrics["n_tokens"] - 1) == pytest.approx(nats, rel=1e-5)
        by_size[size] = metrics["loss"]
    assert len(set(by_size.values())) == 3  # the window changes what each position sees
    _, _, default = evaluate(capsys, checkpoint, data / "play.txt")
    assert default["block_size"] == 32 and default["loss"] == pytest.approx(by_size[32], rel=1e-6)
    status, _, _ = evaluate(capsys, checkpoint, data / "play.txt", "--block-size", "65")
    assert status == 1 and errors[-1].startswith(
        "evaluate: --block-size 65 is longer than the model's max_positions=64")
    image = in_run(tmp_path / "vit", "config/vit_tiny.yaml", (), labels=list(CLASS_NAMES),
                   image_stats=IMAGE_STATS)
    status, _, _ = evaluate(capsys, image, data / "play.txt", "--block-size", "8")
    assert status == 1 and "context window; this checkpoint is a vit" in errors[-1]


def test_a_text_classifier_is_scored_on_labelled_texts(tmp_path, capsys, errors):
    from src.inference import load_for_inference
    from src.inference.classify import classify_texts

    checkpoint = in_run(tmp_path / "imdb", "config/imdb_tiny.yaml", ("text",),
                        labels=["negative", "positive"])
    data = tmp_path / "data"
    data.mkdir()
    lines = ["review,sentiment"] + [f'"{text}",{label}' for text, label in REVIEWS]
    (data / "reviews.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, out, metrics = evaluate(capsys, checkpoint, data / "reviews.csv")
    assert status == 0 and "accuracy:" in out and "macro-F1:" in out
    predicted = [p["label"] for p in classify_texts(load_for_inference(checkpoint, "cpu"),
                                                    [t for t, _ in REVIEWS])]
    assert metrics["accuracy"] == pytest.approx(np.mean([p == label for p, (_, label) in zip(predicted,
                                                                                             REVIEWS)]))
    assert metrics["n_texts"] == len(REVIEWS) and sum(map(sum, metrics["confusion"])) == len(REVIEWS)
    only_the_data(data, {"reviews.csv"})
    (data / "other.csv").write_text('review,sentiment\n"Great.",neutral\n', encoding="utf-8")
    assert main(["evaluate", str(checkpoint), "--split", str(data / "other.csv"), "--device", "cpu"]) == 1
    assert errors[-1].startswith("evaluate: ") and "['neutral'] are not classes of the model" in errors[-1]
    # an output that cannot be written is a usage error (exit 2) before the model is loaded, naming the path
    blocked = data / "reviews.csv" / "m.json"  # under a file: no folder can be made there
    for output, reason in ((blocked,
                            f"cannot write {blocked}: {data / 'reviews.csv'} is a file, not a folder"),
                           (data, f"{data} is a folder; expected a file to write")):
        with pytest.raises(SystemExit) as exited:
            main(["evaluate", str(checkpoint), "--split", str(data / "reviews.csv"), "--output", str(output)])
        assert exited.value.code == 2 and f"argument --output: {reason}" in capsys.readouterr().err


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_a_vit_is_scored_on_an_image_folder_and_on_idx_files_alike(tmp_path, capsys, errors):
    from PIL import Image

    from src.inference import load_for_inference
    from src.tasks.image_classification.task import ImageStats

    checkpoint = in_run(tmp_path / "vit", "config/vit_tiny.yaml", (), labels=list(CLASS_NAMES),
                        image_stats=IMAGE_STATS)
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % len(CLASS_NAMES)
    folder = tmp_path / "images"
    for i, (image, label) in enumerate(zip(images, labels)):
        sub = folder / CLASS_NAMES[label].replace("/", "_")  # T-shirt/top -> T-shirt_top
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"{i:03d}.png")
    status, out, from_folder = evaluate(capsys, checkpoint, folder)
    assert status == 0 and "(12 images)" in out
    idx = tmp_path / "idx"
    idx.mkdir()
    # the folder's order
    order = np.argsort([CLASS_NAMES[k].replace("/", "_") for k in labels], kind="stable")
    write_idx(idx / "t10k-images-idx3-ubyte.gz", images[order], IMAGE_MAGIC)
    write_idx(idx / "t10k-labels-idx1-ubyte.gz", labels[order], LABEL_MAGIC)
    status, _, from_idx = evaluate(capsys, checkpoint, idx / "t10k-images-idx3-ubyte.gz")
    assert status == 0
    model = load_for_inference(checkpoint, "cpu")
    with torch.no_grad():
        pixels = torch.from_numpy(images).unsqueeze(1).float() / 255.0  # (N, 28, 28) -> (N, 1, 28, 28)
        predicted = model.model(ImageStats.from_dict(IMAGE_STATS).normalise(pixels)).argmax(-1).numpy()
    assert from_folder["accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert (from_idx["accuracy"] == from_folder["accuracy"]
            and from_idx["confusion"] == from_folder["confusion"])
    only_the_data(idx, {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(folder / "Bag" / "big.png")
    assert main(["evaluate", str(checkpoint), "--split", str(folder), "--device", "cpu"]) == 1
    assert errors[-1].startswith(f"evaluate: {folder}: images of different sizes [(1, 28, 28), (1, 32, 32)]")


def test_translation_metrics_go_into_the_run_folder_and_a_latin1_file_is_one_line(tmp_path, capsys, errors,
                                                                                  monkeypatch):
    # the scores' values do not matter here
    monkeypatch.setattr("tests.export.conftest.teach_to_copy", lambda model: None)
    checkpoint = in_run(tmp_path / "tr", "config/tiny.yaml", ("src", "tgt"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "pairs.tsv").write_text("de\ten\nDas ist gut.\tThat is good.\nWir gehen.\tWe go.\n",
                                    encoding="utf-8")
    status, out, metrics = evaluate(capsys, checkpoint, data / "pairs.tsv")
    assert status == 0 and "BLEU:" in out and metrics["n_sentences"] == 2
    only_the_data(data, {"pairs.tsv"})  # it used to write pairs.best.metrics.json here
    (data / "latin1.tsv").write_bytes(
        "de\ten\nDas ist gut.\tThat is good.\nSchön.\tNice.\n".encode("latin-1"))
    assert main(["evaluate", str(checkpoint), "--split", str(data / "latin1.tsv"), "--device", "cpu"]) == 1
    assert errors[-1] == (f"evaluate: {data / 'latin1.tsv'}: line 3 is not UTF-8 "
                          "(byte f6 at byte 4 of the line): "
                          "expected UTF-8 text; convert the file, e.g. iconv -f latin1 -t utf-8")

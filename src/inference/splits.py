"""``evaluate --split``: a model of any family scored on its run's test/valid split or on a file of its
own kind.

=====================  ===========================================================  =====================
family                 ``--split FILE``                                             metrics
=====================  ===========================================================  =====================
translation            pairs: .tsv/.csv/.jsonl/.parquet (``read_pairs_file``)       BLEU, chrF, loss
text classifiers       labelled texts: the same kinds, a text and a label column    accuracy, macro-F1
language model         plain text (.txt): documents separated by blank lines        bits per character
masked LM              plain text (.txt): documents separated by blank lines        masked-token loss
ViT                    a folder of images, one subfolder per class, or IDX files    accuracy, macro-F1
=====================  ===========================================================  =====================

Every input goes through what the pipeline's data and tokenize steps did to the run's own test
split (the same cleaning, encoding, stream and normalisation), so a file's scores compare with the
run's ``evaluate/metrics.json``. Text files must be UTF-8 (``read_utf8`` names the line that is not).
"""

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from loguru import logger

from src.inference.classify import TEXT_CLASSIFIERS
from src.inference.loader import InferenceModel

RUN_SPLITS = {"test": "test", "valid": "validation"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IDX_IMAGES = re.compile(r"images-idx3-ubyte(\.gz)?$")
KINDS = {"translation": "a .tsv/.csv/.jsonl/.parquet file of sentence pairs",
         "classifier": "a .tsv/.csv/.jsonl/.parquet file of texts and labels",
         "lm": "a .txt file of plain text",
         "mlm": "a .txt file of plain text",
         "images": "a folder of images (one subfolder per class) or an IDX images file"}


def score_split(trained: InferenceModel, split: str, run_dir: Path | None,
                max_items: int | None, block_size: int | None = None) -> dict[str, Any]:
    """The metrics of ``trained`` on ``split``: "test" or "valid" (the run's own), or a file or folder.

    Args:
        trained: any family's model from ``load_for_inference``.
        split: "test", "valid", or the path of a file (or image folder) of the model's kind.
        run_dir: the checkpoint's run folder (where the run's splits are), or None.
        max_items: score only the first N pairs, texts, documents or images; None: all.
        block_size: a language model's context window while scored (None: the one it was trained
            with); longer than that, it measures how the positions extrapolate.
    """
    kind = _kind(trained.family)
    if block_size is not None:
        _check_block_size(trained, block_size)
        batching = trained.config.batching.model_copy(update={"block_size": block_size})
        trained = replace(trained, config=trained.config.model_copy(update={"batching": batching}))
    scorer = {
        "translation": _translation, "classifier": _classifier, "lm": _language_model, "images": _images,
        "mlm": _masked_lm}[kind]
    if split in RUN_SPLITS:
        return scorer(trained, _run_split(run_dir, trained, RUN_SPLITS[split]), max_items)
    path = Path(split).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--split {split}: no such file; expected 'test', 'valid' or {KINDS[kind]}")
    return scorer(trained, path, max_items)


def _kind(family: str) -> str:
    return ("translation" if family == "encoder_decoder" else "classifier" if family in TEXT_CLASSIFIERS
            else "lm" if family == "decoder_lm" else "mlm" if family == "encoder_mlm" else "images")


def _run_split(run_dir: Path | None, trained: InferenceModel, name: str) -> Any:
    """The run's encoded split ``name`` as its tokenize step saved it; the scorers take it as it is."""
    kind = KINDS[_kind(trained.family)]
    if run_dir is None:
        raise FileNotFoundError(f"{trained.path} is not inside a run folder, so its {name} split is not at "
                                f"hand; pass --split with {kind}")
    folder = run_dir / "tokenize"
    if trained.family == "decoder_lm":
        from src.tasks.language_modeling.task import read_stream

        if not (folder / f"{name}_ids.npy").is_file():
            raise FileNotFoundError(f"run {run_dir} has no {name} stream at {folder}; pass --split with "
                                    f"{kind}")
        return read_stream(folder, name, _block_size(trained))
    if trained.family == "vit":
        from src.tasks.image_classification.task import read_encoded

        if not (folder / "encoded.pt").is_file():
            raise FileNotFoundError(f"run {run_dir} has no encoded images at {folder}; pass --split with "
                                    f"{kind}")
        return read_encoded(folder)[0][name]
    from datasets import load_from_disk

    if not (folder / "encoded").is_dir():
        raise FileNotFoundError(f"run {run_dir} has no encoded data at {folder / 'encoded'}; pass --split "
                                f"with {kind}")
    return load_from_disk(str(folder / "encoded"))[name]


# --- translation ----------------------------------------------------------------------------------
def _translation(trained: InferenceModel, split: Any, max_items: int | None) -> dict[str, Any]:
    from src.inference.translate import encoded_split, evaluate_split, read_pairs_file

    if isinstance(split, Path):
        _check_text_file(split, KINDS["translation"])
        split = encoded_split(trained, *read_pairs_file(split, trained))
    return evaluate_split(trained, split, max_items)["metrics"]


# --- text classification --------------------------------------------------------------------------
def _classifier(trained: InferenceModel, split: Any, max_items: int | None) -> dict[str, Any]:
    from src.tasks.classification.task import LabelledCorpus, classification_metrics, encode_texts, predict

    if isinstance(split, Path):
        _check_text_file(split, KINDS["classifier"])
        texts, labels = read_labelled_file(split, trained)
        ids, _ = encode_texts(trained.tokenizers["text"], texts,
                              trained.config.tokenizer.max_tokens_per_sentence)
        corpus = LabelledCorpus(ids, labels)
    else:
        corpus = LabelledCorpus.from_dataset(split)
    if max_items is not None:
        corpus = LabelledCorpus(corpus.ids[:max_items], corpus.labels[:max_items])
    probabilities, loss = predict(trained.model, corpus, trained.config.batching.max_tokens, trained.device)
    scores = classification_metrics(probabilities.argmax(-1).tolist(), corpus.labels, len(trained.labels))
    return _class_metrics(scores, trained.labels, loss, "n_texts")


def read_labelled_file(path: Path, trained: InferenceModel) -> tuple[list[str], list[int]]:
    """Cleaned texts and class ids of a labelled file, as the data step cleans the run's own data.

    Columns: the run's ``data.text_column``/``label_column``, else IMDB's ``review``/``sentiment``,
    else ``text``/``label``. A label is a class name of the model, or its id.
    """
    from src.data.text_classification import clean_labelled, read_local_labelled

    data = trained.config.data
    candidates = list(dict.fromkeys([(data.text_column, data.label_column), ("review", "sentiment"),
                                     ("text", "label")]))
    for text_column, label_column in candidates:
        try:
            rows = read_local_labelled(path, text_column, label_column)
            break
        except ValueError as err:
            if "not found" not in str(err):
                raise
    else:
        raise ValueError(f"{path} has none of the column pairs {candidates} (text, label)")
    cleaned = clean_labelled(rows)
    if cleaned.dropped:
        logger.info("{}: {} rows left out ({})", path, cleaned.dropped.total(), dict(cleaned.dropped))
    if not cleaned.texts:
        raise ValueError(f"{path} holds no labelled texts in columns {(text_column, label_column)}")
    ids = {name: i for i, name in enumerate(trained.labels)} | {str(i): i for i in range(len(trained.labels))}
    unknown = sorted({label for label in cleaned.labels if label not in ids})
    if unknown:
        raise ValueError(f"{path}: labels {unknown[:10]} are not classes of the model; expected one of "
                         f"{trained.labels} or their ids 0..{len(trained.labels) - 1}")
    return cleaned.texts, [ids[label] for label in cleaned.labels]


def _class_metrics(scores: dict[str, Any], names: list[str], loss: float, count_key: str) -> dict[str, Any]:
    """The evaluate step's classifier metrics (``report_test_scores``), without the tracker."""
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "loss": loss,
            count_key: scores["n"],
            "labels": names, "confusion": scores["confusion"],
            "per_class": {name: {"precision": p, "recall": r}
                          for name, p, r in zip(names, scores["precision"], scores["recall"])}}


# --- language modelling ---------------------------------------------------------------------------
def _block_size(trained: InferenceModel) -> int:
    return trained.config.batching.block_size or trained.config.model.max_positions


def _check_block_size(trained: InferenceModel, block_size: int) -> None:
    """``--block-size`` is a language model's window, at most the positions the model was built for."""
    if trained.family != "decoder_lm":
        raise ValueError(f"--block-size is a language model's context window; this checkpoint is a "
                         f"{trained.family}")
    limit = trained.config.model.max_positions
    if block_size > limit:
        raise ValueError(f"--block-size {block_size} is longer than the model's max_positions={limit} "
                         f"(positions it was built for); train with model.max_positions >= {block_size} "
                         "(and a shorter batching.block_size) to score it there")


def _language_model(trained: InferenceModel, split: Any, max_items: int | None) -> dict[str, Any]:
    """Bits per character of a text stream: a .txt file becomes documents as data_prep makes them."""
    import torch

    from src.data.prose import line_breaks_kept, read_local_text
    from src.tasks.language_modeling.task import SEPARATOR, TokenStream, encode_stream, score_stream

    if isinstance(split, Path):
        if split.is_dir() or split.suffix.lower() != ".txt":
            raise ValueError(f"--split {split}: a language model is scored on {KINDS['lm']}")
        # as data_prep reads a local .txt for this run
        join = not line_breaks_kept(trained.config.data, "local")
        docs = [doc.text for doc in read_local_text(split, max_items, join_lines=join)]
        if not docs:
            raise ValueError(f"{split} holds no text")
        ids, characters = encode_stream(trained.tokenizers["text"], SEPARATOR.join(docs))
        split = TokenStream(torch.tensor(ids, dtype=torch.long), characters, _block_size(trained))
    elif max_items is not None:
        logger.info("--max-sentences does not apply to the run's own stream; scoring all of it")
    scores = score_stream(trained.model, split, trained.config.evaluation.batch_size, trained.device)
    return {**scores, "n_tokens": int(split.ids.numel()), "n_characters": split.characters,
            "block_size": split.block_size}


# --- masked-LM pretraining ------------------------------------------------------------------------
def _masked_lm(trained: InferenceModel, split: Any, max_items: int | None) -> dict[str, Any]:
    """Masked-token loss and accuracy under the test split's fixed mask; a .txt file becomes texts as the
    data step makes them of a local file, encoded as the tokenize step encodes them."""
    from src.data.prose import line_breaks_kept, read_local_text
    from src.tasks.classification.task import encode_texts
    from src.tasks.masked_lm.steps import score_test

    if isinstance(split, Path):
        if split.is_dir() or split.suffix.lower() != ".txt":
            raise ValueError(f"--split {split}: a masked LM is scored on {KINDS['mlm']}")
        join = not line_breaks_kept(trained.config.data, "local")  # as data_prep reads a local .txt
        docs = [doc.text for doc in read_local_text(split, max_items, join_lines=join)]
        if not docs:
            raise ValueError(f"{split} holds no text")
        ids, _ = encode_texts(trained.tokenizers["text"], docs,
                              trained.config.tokenizer.max_tokens_per_sentence)
    else:
        ids = split["ids"][:max_items] if max_items is not None else split["ids"]
    return score_test(trained, ids)


# --- images ---------------------------------------------------------------------------------------
def _images(trained: InferenceModel, split: Any, max_items: int | None) -> dict[str, Any]:
    from src.tasks.classification.task import classification_metrics
    from src.tasks.image_classification.task import ImageSplit, ImageStats, predict_images

    if isinstance(split, Path):
        split = read_images(split, trained)
    if max_items is not None:
        split = ImageSplit(split.images[:max_items], split.labels[:max_items])
    stats = ImageStats.from_dict(trained.image_stats)  # the training split's, from the checkpoint
    probabilities, loss = predict_images(trained.model, split, stats, trained.device)
    scores = classification_metrics(probabilities.argmax(-1).tolist(), split.labels.tolist(),
                                    len(trained.labels))
    return _class_metrics(scores, trained.labels, loss, "n_images")


def read_images(path: Path, trained: InferenceModel):
    """An ``ImageSplit`` from IDX files (an images file, its labels file beside it) or an image folder."""
    from src.tasks.image_classification.task import ImageSplit

    idx = [path] if path.is_file() else sorted(p for p in path.iterdir() if IDX_IMAGES.search(p.name))
    if path.is_file() and not IDX_IMAGES.search(path.name):
        raise ValueError(f"--split {path}: a ViT is scored on {KINDS['images']} (named "
                         "*images-idx3-ubyte[.gz])")
    images, labels = _read_idx_pair(idx[0]) if idx else _read_image_folder(path, trained)
    expected = (trained.config.model.in_channels, trained.config.model.image_size,
                trained.config.model.image_size)
    if tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"{path}: images are {tuple(images.shape[1:])} (C, H, W); the model takes {expected}")
    if labels.numel() and int(labels.max()) >= len(trained.labels):
        raise ValueError(f"{path}: label {int(labels.max())} is not a class of the model "
                         f"(0..{len(trained.labels) - 1})")
    return ImageSplit(images, labels)


def _read_idx_pair(images_file: Path):
    import torch

    from src.data.fashion_mnist import IMAGE_MAGIC, LABEL_MAGIC, read_idx

    labels_file = images_file.with_name(IDX_IMAGES.sub(lambda m: "labels-idx1-ubyte" + (m.group(1) or ""),
                                                       images_file.name))
    if not labels_file.is_file():
        raise FileNotFoundError(f"{images_file}: its labels file {labels_file.name} is not beside it")
    x, y = read_idx(images_file, IMAGE_MAGIC), read_idx(labels_file, LABEL_MAGIC)
    if len(x) != len(y):
        raise ValueError(f"{images_file}: {len(x)} images but {len(y)} labels in {labels_file.name}")
    # (N, H, W) -> (N, 1, H, W)
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype("int64"))


def _class_key(name: str) -> str:
    """Folder names cannot hold "/": ``T-shirt/top`` is matched by ``t-shirt_top``, ``tshirttop``, ..."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _read_image_folder(folder: Path, trained: InferenceModel):
    """``folder/<class>/<image>``: a class is a subfolder named by the class (or its id)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    classes = {_class_key(name): i for i, name in enumerate(trained.labels)} | {
        str(i): i for i in range(len(trained.labels))}
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    unknown = [p.name for p in subfolders if _class_key(p.name) not in classes]
    if not subfolders or unknown:
        raise ValueError(f"{folder}: expected one subfolder per class, named by the class {trained.labels} "
                         f"or its id; {'found ' + str(unknown) if unknown else 'found no subfolders'}")
    mode = "L" if trained.config.model.in_channels == 1 else "RGB"
    images, labels = [], []
    for sub in subfolders:
        for file in sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert(mode))
            except (UnidentifiedImageError, OSError) as err:
                raise ValueError(f"{file}: not a readable image ({err})") from None
            # (H, W[, C]) -> (C, H, W)
            images.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
            labels.append(classes[_class_key(sub.name)])
    if not images:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class subfolders")
    shapes = {x.shape for x in images}
    if len(shapes) > 1:
        raise ValueError(f"{folder}: images of different sizes {sorted(shapes)} (C, H, W); the model takes "
                         "one size")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long)


def _check_text_file(path: Path, kind: str) -> None:
    """A directory or a non-UTF-8 text file is refused before anything is read into the model."""
    from src.data.text_files import read_utf8

    if path.is_dir():
        raise ValueError(f"--split {path} is a folder; expected {kind}")
    if path.suffix.lower() != ".parquet":
        read_utf8(path)

"""Masked-LM pretraining: BERT's choice and 80/10/10 rule in their proportions, never on special tokens or
padding, drawn afresh per batch; fixed masks for validation and test; IMDB's training reviews only."""

import math

import pytest
import torch

from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from src.tasks.masked_lm.task import (
    FIRST_ORDINARY_ID,
    IGNORE,
    MaskedLMProbe,
    MaskedLMTask,
    TextCorpus,
    choose_positions,
    fixed_masks,
    mask_tokens,
    score_masked,
)
from src.training.distributed import micro_batch_seed

VOCAB = 1000
MASK_ID = VOCAB - 1  # appended last, as the tokenize step appends it
ORDINARY = MASK_ID - FIRST_ORDINARY_ID  # ids a random replacement may take


def texts(n: int, length: int, seed: int = 0) -> torch.Tensor:
    """(n, length) ordinary token ids, [CLS] first."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(FIRST_ORDINARY_ID, MASK_ID, (n, length), generator=generator)
    tokens[:, 0] = BOS_ID
    return tokens


def within(observed: float, p: float, n: int, sds: float = 4.5) -> bool:
    """``observed`` share of ``n`` Bernoulli(p) draws within ``sds`` binomial standard deviations of ``p``."""
    return abs(observed - p) <= sds * math.sqrt(p * (1 - p) / n)


def test_the_80_10_10_rule_holds_in_its_proportions_over_many_draws():
    tokens = texts(200, 101)  # 100 maskable tokens a row: round(15) chosen
    generator = torch.Generator().manual_seed(0)
    masked = random = kept = 0
    for _ in range(20):
        inputs, labels = mask_tokens(tokens, MASK_ID, generator)
        chosen = labels != IGNORE
        assert (chosen.sum(dim=1) == 15).all()  # BERT's num_to_predict: round(0.15 n) per text
        assert torch.equal(labels[chosen], tokens[chosen]) and torch.equal(inputs[~chosen], tokens[~chosen])
        masked += int((inputs[chosen] == MASK_ID).sum())
        same = inputs[chosen] == tokens[chosen]
        kept += int(same.sum())
        swapped = inputs[chosen][(inputs[chosen] != MASK_ID) & ~same]
        random += swapped.numel()
        # an ordinary token, never a special one or [MASK]
        assert ((swapped >= FIRST_ORDINARY_ID) & (swapped < MASK_ID)).all()
    n = 20 * 200 * 15
    # a random replacement draws the original token itself once in ORDINARY times: it then counts as kept
    assert within(masked / n, 0.8, n), masked / n
    assert within(random / n, 0.1 * (1 - 1 / ORDINARY), n), random / n
    assert within(kept / n, 0.1 + 0.1 / ORDINARY, n), kept / n


def test_every_maskable_position_is_chosen_equally_often():
    tokens = texts(400, 21)  # 20 maskable positions, 3 chosen each time: 15% of each
    generator = torch.Generator().manual_seed(1)
    counts = sum(choose_positions(tokens, MASK_ID, generator).sum(dim=0) for _ in range(25))
    n = 400 * 25
    assert counts[0] == 0
    rates = counts[1:].float() / n
    # 20 positions: 4.5 sd leaves a chance of a false alarm below 1e-4
    assert all(within(float(rate), 3 / 20, n) for rate in rates), rates


def test_special_tokens_padding_and_mask_are_never_chosen():
    rows = [[BOS_ID, 5, 6, UNK_ID, 7, EOS_ID, MASK_ID, 8],
            [BOS_ID, 9, UNK_ID, 10, EOS_ID],
            [BOS_ID, 11]]
    tokens = torch.full((3, 8), PAD_ID)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    special = tokens < FIRST_ORDINARY_ID
    special |= tokens == MASK_ID
    generator = torch.Generator().manual_seed(2)
    for _ in range(2000):
        inputs, labels = mask_tokens(tokens, MASK_ID, generator)
        assert (labels[special] == IGNORE).all()
        assert torch.equal(inputs[special], tokens[special])  # padding stays padding, [CLS] stays [CLS]
    # and each row's ordinary tokens are chosen: 4 -> round(0.6) = 1, 2 -> at least 1, 1 -> 1
    assert ((labels != IGNORE).sum(dim=1) == 1).all()


def corpus_task(n: int = 64) -> MaskedLMTask:
    ids = texts(n, 30).tolist()
    return MaskedLMTask(TextCorpus(ids), fixed_masks(ids, MASK_ID, 1), VOCAB, MASK_ID)


def test_two_epochs_draw_different_masks_and_a_resumed_step_the_same():
    """The loop seeds torch per (seed, step, micro-batch) before ``batch``: the same texts drawn at two steps
    (two epochs) are masked differently, and at the same step (a resume) identically."""
    task, indices = corpus_task(), list(range(64))

    def drawn_at(step: int):
        torch.manual_seed(micro_batch_seed(0, step, 0, 0))
        return task.batch(indices, torch.device("cpu"))

    first, second, again = drawn_at(3), drawn_at(3 + 1), drawn_at(3)
    assert not torch.equal(first[1] != IGNORE, second[1] != IGNORE)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    # a different draw, of the same size: the rule, not the data, changed
    assert (first[1] != IGNORE).sum() == (second[1] != IGNORE).sum()


def test_the_fixed_mask_does_not_depend_on_batching_and_scores_the_same(tiny_config):
    from src.models.builders import build

    ids = texts(40, 25, seed=3).tolist()
    ids = [row[: 5 + i % 20] for i, row in enumerate(ids)]  # varied lengths: batches differ by budget
    once, twice = fixed_masks(ids, MASK_ID, 7), fixed_masks(ids, MASK_ID, 7)
    assert once == twice and fixed_masks(ids, MASK_ID, 8) != once
    model = build(tiny_config.model_copy(update={"family": "encoder_mlm"}), vocab_size=VOCAB, pad_id=PAD_ID)
    small = score_masked(model, once, 64, torch.device("cpu"))
    large = score_masked(model, once, 4096, torch.device("cpu"))
    chosen = sum(label != IGNORE for row in once.labels for label in row)
    assert small["n_masked"] == large["n_masked"] == chosen
    assert small["loss"] == pytest.approx(large["loss"], rel=1e-5)
    assert small["accuracy"] == large["accuracy"]


def test_the_loss_counts_only_the_chosen_positions(tiny_config):
    import torch.nn.functional as F

    from src.models.builders import build

    task = corpus_task()
    model = build(tiny_config.model_copy(update={"family": "encoder_mlm", "dropout": 0.0}), vocab_size=VOCAB,
                  pad_id=PAD_ID).eval()
    torch.manual_seed(0)
    inputs, labels = task.batch(list(range(8)), torch.device("cpu"))
    with torch.no_grad():
        loss, n = task.loss(model, (inputs, labels), 0.0)
        full = F.cross_entropy(model(inputs).flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    assert n == task.targets((inputs, labels)) == int((labels != IGNORE).sum()) > 0
    assert float(loss) == pytest.approx(float(full), rel=1e-5)


def test_the_task_refuses_a_mask_id_that_is_not_the_last():
    with pytest.raises(ValueError, match="expected 999, got 5"):
        MaskedLMTask(TextCorpus([[BOS_ID, 6]]), fixed_masks([[BOS_ID, 6]], 5, 1), VOCAB, 5)


def test_the_probe_lists_the_top_5_guesses_for_each_masked_word(tiny_config, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from src.models.builders import build
    from src.tracking import NullTracker

    words = ["<pad>", "<s>", "</s>", "<unk>", *(f"w{i}" for i in range(20)), "[MASK]"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    mask_id = len(words) - 1
    probe = MaskedLMProbe.from_ids([[BOS_ID, *range(4, 24)], [BOS_ID, 4, 5, 6]], tokenizer, mask_id)
    model = build(tiny_config.model_copy(update={"family": "encoder_mlm"}), vocab_size=len(words),
                  pad_id=PAD_ID)
    table = probe.predictions(model.eval())
    assert list(table["text"]) == [0, 0, 0, 1]  # round(0.15 * 20) = 3 masked words, then 1 of 3
    for row in table.to_dict("records"):
        assert probe.inputs[row["text"]][row["position"]] == mask_id
        assert probe.labels[row["text"]][row["position"]] == tokenizer.token_to_id(row["answer"])
        assert len(row["top 5"].split(", ")) == 5 and 1 <= row["answer rank"] <= len(words)
        masked = sum(label != IGNORE for label in probe.labels[row["text"]])
        assert row["masked text"].count("[MASK]") == masked
    short = MaskedLMProbe(probe.inputs[1:], probe.labels[1:], tokenizer)  # one small heatmap: seconds less
    short.report(model, NullTracker(tmp_path), 7)  # the masked positions' attention, saved as PNG
    assert len(list(tmp_path.rglob("*.png"))) == 1


def test_imdb_pretraining_reads_only_the_classifiers_training_reviews(tmp_path):
    """The MLM data step on imdb_tiny's data reads exactly the training reviews that the classification data
    step makes of the same settings, and none of its validation or test reviews; imdb_mlm.yaml pairs with
    imdb_classifier.yaml the same way."""
    from datasets import load_from_disk

    from src.experiment import load_config
    from src.tasks.classification.steps import read_rows
    from src.tasks.masked_lm.steps import imdb_training_texts
    from tests.pipelines.conftest import imdb_data_dir

    imdb_data_dir()  # skips (or fails in CI) without the CSV
    from src.data.text_classification import prepare_text_classification

    data = load_config("config/imdb_mlm_tiny.yaml").data
    assert data == load_config("config/imdb_tiny.yaml").data
    assert load_config("config/imdb_mlm.yaml").data == load_config("config/imdb_classifier.yaml").data
    splits, card = imdb_training_texts(data)
    prepare_text_classification(read_rows(data), tmp_path, valid_size=data.valid_fraction,
                                test_size=data.test_fraction, salt=data.split_salt, max_chars=data.max_chars)
    dataset = load_from_disk(str(tmp_path / "dataset"))
    classifier = {name: set(split["text"]) for name, split in dataset.items()}
    read = [text for split in splits.values() for text in split]
    assert set(read) == classifier["train"] and len(read) == len(classifier["train"])
    assert not set(read) & (classifier["validation"] | classifier["test"])
    assert all(splits[name] for name in ("train", "validation", "test"))
    assert card["classifier_split"] == {name: len(texts) for name, texts in classifier.items()}


def test_a_text_longer_than_the_models_positions_is_refused_before_training():
    from src.config.base import ConfigError
    from src.experiment import load_config

    message = "tokenizer.max_tokens_per_sentence=200 exceeds model.max_positions=128"
    with pytest.raises(ConfigError, match=message):
        load_config("config/imdb_mlm_tiny.yaml", ["tokenizer.max_tokens_per_sentence=200"])
    assert load_config("config/imdb_mlm_tiny.yaml", ["tokenizer.kind=byte"]).tokenizer.kind == "byte"


def test_the_training_loop_masks_each_epoch_afresh(tmp_path):
    """Through the real loop: every epoch is one batch of the same 8 texts, and each is masked anew."""
    from src.experiment import validate_config
    from src.tracking import NullTracker
    from src.training.trainer import Trainer

    torch.set_num_threads(1)
    cfg = validate_config({
        "task": "masked_lm", "output_dir": str(tmp_path), "run_name": "mlm", "data": {"source": "prose"},
        "model": {"family": "encoder_mlm", "d_model": 32, "n_heads": 2, "n_encoder_layers": 1, "d_ff": 64},
        "batching": {"max_tokens": 4096},
        "training": {"max_steps": 3, "warmup_steps": 1, "log_every": 1, "eval_every": 3,
                     "checkpoint_every": 3},
        "tracking": {"heatmap_every": 100}})
    task = corpus_task(8)
    drawn, draw = [], task.batch

    def recorded(indices, device):
        drawn.append((list(indices), draw(indices, device)))
        return drawn[-1][1]

    task.batch = recorded
    Trainer(cfg, task, tmp_path / "mlm", NullTracker()).fit()
    assert len(drawn) == 3 and all(sorted(indices) == list(range(8)) for indices, _ in drawn)
    masks = [labels[torch.tensor(indices).argsort()] != IGNORE for indices, (_, labels) in drawn]
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])

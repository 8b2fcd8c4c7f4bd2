"""``train --config config/imdb_tiny.yaml model.init_from=<BERT folder>``: the five steps start from the
folder's weights and tokenizer; a wrong source fails in one line before any step runs."""

import json
import re

import pytest
import torch

from tests.clearml_stub.stub import run_src_main
from tests.models.bert_folder import save_bert_folder
from tests.pipelines.conftest import STEPS, clean_env, imdb_data_dir, seed_step_cache, train_offline

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def bert_run(imdb_run, tmp_path_factory):
    """A masked-LM BERT folder: its encoder loads, the classifier's head is new, the MLM head is ignored."""
    root = tmp_path_factory.mktemp("init_from")
    seed_step_cache(root, imdb_run[1])  # data_prep: the session's imdb-tiny run's
    folder = save_bert_folder(root / "bert", layers=1, width=32, positions=128, mlm=True)
    proc, run_dir = train_offline(
        "config/imdb_tiny.yaml",
        root,
        f"model.init_from={folder}",
        "training.max_steps=10",
        STEPWISE_DATA_DIR=imdb_data_dir(),
    )
    status = json.loads((run_dir / "status.json").read_text())
    assert all(status["steps"][s]["status"] == "completed" for s in STEPS), status
    return folder, run_dir, proc.stderr


def test_the_run_starts_from_the_folders_weights_and_tokenizer(bert_run):
    folder, run_dir, _ = bert_run
    tokenizer = json.loads((run_dir / "tokenize" / "tokenizer.json").read_text())
    assert tokenizer["model"]["type"] == "WordPiece" and tokenizer["normalizer"]["lowercase"] is True
    assert (
        tokenizer["padding"] is None and tokenizer["truncation"] is None
    )  # the batches pad, not the tokenizer
    best = torch.load(run_dir / "train" / "checkpoints" / "best.pt", weights_only=True)
    assert json.loads(best["tokenizers"]["text"])["model"]["type"] == "WordPiece"  # the checkpoint carries it
    model = json.loads(best["config"])["model"]
    assert model["init_from"] == str(folder) and model["embedding_norm"] and model["type_vocab_size"] == 2
    from datasets import load_from_disk

    first = load_from_disk(str(run_dir / "tokenize" / "encoded"))["train"]["ids"][0]
    assert (first[0], first[-1]) == (2, 3)  # [CLS] ... [SEP], the folder's template


def test_the_train_task_records_where_its_weights_started(bert_run):
    from tests.pipelines.test_user_properties import properties

    folder, run_dir, _ = bert_run
    assert properties(run_dir, "train")["init_from"] == str(folder)


def test_the_log_has_one_table_of_loaded_new_and_ignored(bert_run):
    _, _, log = bert_run
    rows = dict(re.findall(r"^  (loaded|newly initialised|ignored)\s+(\d+)", log, re.MULTILINE))
    assert rows == {"loaded": "17", "newly initialised": "4", "ignored": "5"}, log[-3000:]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("{root}/minilm", "train: model.init_from={root}/minilm: no such file or folder"),
        (
            "{root}/gpt2",
            "train: model.init_from={root}/gpt2 holds a gpt2 model (for family='decoder_lm'); "
            "model.family='encoder_classifier' starts from bert weights",
        ),
    ],
)
def test_a_wrong_source_fails_in_one_line_before_any_step(tmp_path, source, expected):
    import transformers

    config = transformers.GPT2Config(
        n_embd=16, n_layer=1, n_head=2, vocab_size=50, activation_function="gelu"
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    proc = run_src_main(
        [
            "train",
            "--config",
            "config/imdb_tiny.yaml",
            f"model.init_from={source.format(root=tmp_path)}",
            f"output_dir={tmp_path / 'runs'}",
        ],
        clean_env(tmp_path / "home"),
        timeout=120,
    )
    errors = [line for line in proc.stderr.splitlines() if "| ERROR" in line]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-3000:]
    assert expected.format(root=tmp_path) in errors[0]
    assert not (tmp_path / "runs").exists()  # no run folder: nothing started

"""BPE tokenizer: fixed special ids, exact round trip, loading with both libraries, encoding."""

import unicodedata

import pytest
from datasets import Dataset, DatasetDict, load_from_disk
from tokenizers import Tokenizer, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from src.config.data import TokenizerConfig
from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from src.data.tokenizer import (
    decode_ids,
    encode_corpus,
    load_tokenizer,
    new_tokenizer,
    train_tokenizer,
    training_chunks,
    with_specials,
)

TRAIN = [
    ("Die Straße ist schön.", "The street is beautiful."),
    ("Größe und Übermaß sind nicht dasselbe.", "Size and excess are not the same."),
    ("Ärger über die Bäume im Garten.", "Trouble about the trees in the garden."),
    ("Wir essen Äpfel, Öl und Süßes.", "We eat apples, oil and sweets."),
] * 5
TEST_ONLY_WORD = "Donaudampfschifffahrtsgesellschaft"
ROUND_TRIP = [
    "Die Straße ist schön.",
    unicodedata.normalize("NFD", "Öl, Äpfel, Übermaß und Größe!"),
    "Maß, Fuß, Grüße – „Zitat“ 100 %",
    "Unbekannt: 日本語, ÆØÅ, ﬁ, €",
    TEST_ONLY_WORD,
]
SMALL = TokenizerConfig(vocab_size=400, min_frequency=1, max_tokens_per_sentence=12)


def corpus(train=TRAIN, test=((TEST_ONLY_WORD + ".", "A company."),) * 20) -> DatasetDict:
    def split(rows):
        return Dataset.from_dict({"src": [s for s, _ in rows], "tgt": [t for _, t in rows]})

    return DatasetDict({"train": split(train), "validation": split([]), "test": split(list(test))})


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    return train_tokenizer(corpus(), SMALL, out)


def test_joint_tokenizer_is_one_file_with_fixed_special_ids(joint):
    assert joint["src"] == joint["tgt"] and joint["src"].name == "tokenizer.json"
    tok = load_tokenizer(joint["src"])
    assert (
        [tok.token_to_id(t) for t in ("<pad>", "<s>", "</s>", "<unk>")]
        == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
        == [0, 1, 2, 3]
    )


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_equals_nfc_text(joint, text):
    tok = load_tokenizer(joint["src"])
    ids = tok.encode(text).ids
    assert UNK_ID not in ids
    assert tok.decode(ids) == unicodedata.normalize("NFC", text)
    assert decode_ids(tok, ids + [EOS_ID]) == unicodedata.normalize("NFC", text)


def test_trained_on_the_training_split_only(joint):
    tok = load_tokenizer(joint["src"])
    assert len(tok.encode(TEST_ONLY_WORD).ids) > 3  # frequent in test, never seen in training
    assert len(tok.encode("Straße").ids) == 1


def test_loads_with_tokenizers_and_transformers(joint):
    tok = Tokenizer.from_file(str(joint["src"]))
    hf = PreTrainedTokenizerFast(
        tokenizer_file=str(joint["src"]),
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    text = "Wir essen Äpfel und Größe."
    assert hf.encode(text, add_special_tokens=False) == tok.encode(text).ids
    assert hf.pad_token_id == PAD_ID and hf.eos_token_id == EOS_ID
    assert hf.decode(tok.encode(text).ids) == text


def test_separate_vocabularies(tmp_path):
    paths = train_tokenizer(corpus(), SMALL.model_copy(update={"joint": False}), tmp_path)
    assert paths["src"] != paths["tgt"]
    src_vocab = set(load_tokenizer(paths["src"]).get_vocab())
    assert "ĠStraÃŁe" in src_vocab  # byte-level spelling of " Straße"
    assert "ĠStraÃŁe" not in set(load_tokenizer(paths["tgt"]).get_vocab())


def test_decode_ids_stops_at_eos_and_drops_specials(joint):
    tok = load_tokenizer(joint["src"])
    body = tok.encode("Die Straße ist schön.").ids
    assert (
        decode_ids(tok, [BOS_ID, *body, EOS_ID, *tok.encode("Garten").ids, PAD_ID, PAD_ID])
        == "Die Straße ist schön."
    )


@pytest.mark.parametrize("bos", [False, True])
def test_with_specials_keeps_eos_last_within_max_len(bos):
    sentences = [list(range(10, 10 + n)) for n in (0, 3, 9, 10, 11, 12, 20)]
    batch, cut = with_specials(sentences, 12, bos=bos)
    room = 12 - 1 - bos
    for tokens, ids, was_cut in zip(sentences, batch, cut):
        assert ids[-1] == EOS_ID and len(ids) <= 12 and (ids[0] == BOS_ID) is bos
        assert ids[bos:-1] == tokens[:room] and was_cut is (len(tokens) > room)


def test_encode_corpus_columns_truncation_and_files(joint, tmp_path):
    long_src = " ".join(["Die Straße ist schön"] * 5) + "."
    data = corpus(train=TRAIN + [(long_src, "Short.")])
    encoded, report = encode_corpus(data, {"src": joint["src"], "tgt": joint["tgt"]}, SMALL, tmp_path)
    train = encoded["train"]
    assert all(r["src_ids"][-1] == EOS_ID and BOS_ID not in r["src_ids"] for r in train)
    assert all(r["tgt_ids"][0] == BOS_ID and r["tgt_ids"][-1] == EOS_ID for r in train)
    assert all(len(r["src_ids"]) == r["src_len"] <= 12 for r in train)
    assert report["splits"]["train"]["src_truncated"] == 1 and report["splits"]["train"]["tgt_truncated"] == 0
    assert report["splits"]["validation"]["rows"] == 0
    tok = load_tokenizer(joint["src"])
    assert decode_ids(tok, train[0]["tgt_ids"]) == train[0]["tgt"]
    reloaded = load_from_disk(str(tmp_path / "encoded"))
    assert reloaded["train"].column_names == ["src", "tgt", "src_ids", "tgt_ids", "src_len", "tgt_len"]
    assert (tmp_path / "encoding_report.json").exists()


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "tokenizer.json")


def test_chunked_training_equals_text_by_text_training():
    data = corpus()["train"]

    def trained(texts) -> str:
        tokenizer = new_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            min_frequency=1,
            special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return tokenizer.to_str()

    one_by_one = [
        text for batch in data.iter(batch_size=3) for column in ("src", "tgt") for text in batch[column]
    ]
    assert trained(training_chunks(data, ["src", "tgt"], texts_per_chunk=3)) == trained(one_by_one)

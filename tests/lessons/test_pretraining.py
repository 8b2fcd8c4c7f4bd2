"""The pretraining lesson's claims, at its reduced size (``SMALL``): masked-LM pretraining turns noise into
guesses of the sentence's sentiment, and the classifier started from it carries a few labels over to words
no label showed, where the same classifier from random weights is near chance."""

import pytest

from src.lessons import pretraining


@pytest.fixture(scope="module")
def results(lesson):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretraining, "STEPS", pretraining.lesson_steps(pretraining.SMALL))
        return lesson("pretraining")


def test_pretraining_turns_masked_word_noise_into_the_sentences_sentiment(results):
    m = results["masked predictions before and after pretraining"].metrics
    # before: no better than a uniform guess over the 28 words and [MASK] (ln 29 = 3.37) or the frequencies
    assert m["loss_before"] > m["frequency_guess_loss"] > m["loss_after"] + 0.3
    assert 0.35 < m["sentiment_before"] < 0.65 and m["sentiment_after"] > 0.95
    assert m["similarity_within"] > m["similarity_across"] + 0.1  # the words' embeddings form two blocks


def test_the_pretrained_start_carries_the_labels_to_unseen_words(results):
    m = results["the same classifier with and without a pretrained start"].metrics
    assert m["accuracy_seen_random"] > 0.95 and m["accuracy_seen_pretrained"] > 0.95  # both fit the labels
    assert m["accuracy_unseen_random"] < 0.7  # near chance on words no label showed
    assert m["accuracy_unseen_pretrained"] > 0.9


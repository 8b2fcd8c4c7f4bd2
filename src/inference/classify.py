"""Classify texts with a text classifier rebuilt by ``load_for_inference`` (encoder, LSTM, GRU or Elman RNN).

A text reaches the model as a training text did: HTML cleaned and normalised (``clean_html``, as
the data step), then ``[CLS] + tokens`` cut to ``tokenizer.max_tokens_per_sentence``
(``encode_texts``, as the tokenize step). Batches are right-padded; every classifier masks its
padding, so a text's probabilities do not depend on what it is batched with.
"""

import torch

from src.inference.loader import InferenceModel

TEXT_CLASSIFIERS = frozenset({"encoder_classifier", "lstm_classifier", "gru_classifier", "rnn_classifier"})


@torch.no_grad()
def classify_texts(trained: InferenceModel, texts: list[str], batch_size: int = 64) -> list[dict]:
    """``{"label", "probabilities": {label: p}}`` per text, in order.

    Args:
        trained: a text classifier (family in ``TEXT_CLASSIFIERS``).
        texts: the texts; none may be blank after cleaning (a blank text has no answer).
        batch_size: texts per forward pass.
    """
    from src.data.text_classification import clean_html
    from src.tasks.classification.task import encode_texts

    if trained.family not in TEXT_CLASSIFIERS:
        raise ValueError(f"{trained.path} holds a {trained.family} model; classify needs one of "
                         f"{sorted(TEXT_CLASSIFIERS)}")
    cleaned = [clean_html(text) for text in texts]
    blank = [i for i, text in enumerate(cleaned) if not text]
    if blank:
        raise ValueError(f"texts at positions {blank} are empty after cleaning; expected non-blank text")
    ids, _ = encode_texts(trained.tokenizers["text"], cleaned,
                          trained.config.tokenizer.max_tokens_per_sentence)
    pad = trained.special_ids["pad"]
    rows: list[torch.Tensor] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        tokens = torch.full((len(chunk), max(map(len, chunk))), pad, dtype=torch.long)  # (B, T)
        for row, text_ids in enumerate(chunk):
            tokens[row, : len(text_ids)] = torch.tensor(text_ids)
        rows.extend(trained.model(tokens.to(trained.device)).float().softmax(-1).cpu())  # (B, K) -> B rows
    labels = trained.labels
    return [{"label": labels[int(p.argmax())], "probabilities": dict(zip(labels, p.tolist(), strict=True))}
            for p in rows]

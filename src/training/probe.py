"""A fixed probe batch whose attention maps are drawn as the model trains.

The same sentences at every report let a researcher watch heads specialise: diagonal
self-attention, alignment in cross-attention, the causal triangle in decoder self-attention.
"""

import codecs
from dataclasses import dataclass

import torch

from src.models.transformer import EncoderDecoderTransformer
from src.training.task import evaluating

KINDS = {"encoder_self": ("source", "source"), "decoder_self": ("target", "target"),
         "cross": ("target", "source")}
# 24 tokens a side keeps a 0.25 in cell and 8 pt labels (a 3 x 4 grid is ~30 in wide) and ~1 s to draw
MAX_TOKENS = 24
MAX_TITLE_CHARS = 60


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


BYTE_OF_CHAR = _byte_level_alphabet()


def token_labels(tokenizer, token_ids: list[int]) -> list[str]:
    """The subwords of one sentence as a reader should see them: real characters, "▁" where a word starts.

    Byte-level BPE stores "ä" as the two byte symbols "Ã¤", and a token may hold only one of
    them. The sentence's bytes are decoded token by token with an incremental UTF-8 decoder: a
    character appears in the token that completes it, and a token that completes none (the first
    byte of a split "ä") shows its bytes in hex, e.g. "<c3>". Special tokens keep their names.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    labels = []
    for token_id in token_ids:
        raw = tokenizer.id_to_token(int(token_id))
        if raw is None or any(ch not in BYTE_OF_CHAR for ch in raw):  # special token (or not byte-level)
            labels.append(raw if raw is not None else f"<id {token_id}>")
            continue
        data = bytes(BYTE_OF_CHAR[ch] for ch in raw)
        text = decoder.decode(data)
        if not text:
            labels.append("".join(f"<{b:02x}>" for b in data))
        else:
            labels.append("▁" + text[1:] if text.startswith(" ") else text)
    return labels


def readable_labels(tokenizer, token_ids: list[int]) -> list[str]:
    """Heatmap axis labels for any of the project's tokenizers: ``token_labels`` for the byte-level ones
    (BPE, bytes), whose symbols stand for bytes; the tokens themselves, whitespace made visible, for
    characters and words, whose symbols are text."""
    from tokenizers import pre_tokenizers

    from src.data.char_tokenizer import char_labels

    if isinstance(tokenizer.pre_tokenizer, pre_tokenizers.ByteLevel):
        return token_labels(tokenizer, token_ids)
    return char_labels(tokenizer, token_ids)


def shorten(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass
class AttentionProbe:
    """Token ids of a few sentences, their subword strings (the heatmap axis labels) and source text.

    ``src_lengths`` / ``tgt_lengths`` are the token counts before truncation to ``max_tokens``, so a
    figure can say it shows only the first tokens.
    """

    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    src_tokens: list[list[str]]
    tgt_tokens: list[list[str]]
    src_text: list[str]
    src_lengths: list[int]
    tgt_lengths: list[int]

    @classmethod
    def from_ids(
        cls,
        src_ids: list[list[int]],
        tgt_ids: list[list[int]],
        src_tokenizer,
        tgt_tokenizer,
        max_tokens: int = MAX_TOKENS,
    ) -> "AttentionProbe":
        """``tgt_ids`` are full targets (BOS ... EOS); the decoder sees them without the final EOS.

        Each side keeps its first ``max_tokens`` tokens: the model is run on exactly the ids shown.
        Truncating the source changes the encoder's attention (fewer keys to share it); the decoder's
        self-attention over the kept target prefix is unchanged (causal mask).
        """
        tgt_in = [list(ids[:-1]) for ids in tgt_ids]
        src_kept = [list(ids[:max_tokens]) for ids in src_ids]
        tgt_kept = [ids[:max_tokens] for ids in tgt_in]
        return cls(
            src_ids=src_kept,
            tgt_ids=tgt_kept,
            src_tokens=[token_labels(src_tokenizer, ids) for ids in src_kept],
            tgt_tokens=[token_labels(tgt_tokenizer, ids) for ids in tgt_kept],
            src_text=[src_tokenizer.decode(list(ids), skip_special_tokens=True) for ids in src_ids],
            src_lengths=[len(ids) for ids in src_ids],
            tgt_lengths=[len(ids) for ids in tgt_in],
        )

    def title(self, kind: str, index: int, step: int | None = None) -> str:
        """E.g. 'cross attention · step 600 · "Ich habe keine Zeit."', a second line if tokens were cut."""
        parts = [f"{kind} attention"]
        if step is not None:
            parts.append(f"step {step}")
        parts.append(f'"{shorten(self.src_text[index])}"')
        sides = (("source", self.src_ids, self.src_lengths), ("target", self.tgt_ids, self.tgt_lengths))
        cuts = [f"first {len(ids[index])} of {lengths[index]} {side} tokens"
                for side, ids, lengths in sides if lengths[index] > len(ids[index])]
        return " · ".join(parts) + (f"\nshowing {', '.join(cuts)}" if cuts else "")

    @torch.no_grad()
    def attention(self, model: EncoderDecoderTransformer, index: int) -> dict[str, list[torch.Tensor]]:
        """Per-kind, per-layer attention weights (H, Tq, Tk) of probe sentence ``index``."""
        with evaluating(model):
            device = next(model.parameters()).device
            src = torch.tensor([self.src_ids[index]], device=device)
            tgt = torch.tensor([self.tgt_ids[index]], device=device)
            _, attn = model(src, tgt, return_attention=True)
        return {kind: [layer[0].float().cpu() for layer in layers] for kind, layers in attn.items()}

    def figures(self, model: EncoderDecoderTransformer, index: int, step: int | None = None):
        """Yield (title, series, figure): one figure per attention kind, a row per layer, a column per head.

        Every panel of a row shares the query tokens (labelled on the first column), every panel
        of a column the key tokens (labelled on the bottom row): one figure per kind and report
        keeps the cost of a report to a few seconds (see ``python -m src.tuning.overhead``).
        """
        from src.visualization import plot_attention

        axes = {"source": self.src_tokens[index], "target": self.tgt_tokens[index]}
        for kind, layers in self.attention(model, index).items():
            query_axis, key_axis = KINDS[kind]
            weights = torch.stack(layers)  # (L, H, Tq, Tk)
            figure = plot_attention(weights, axes[query_axis], axes[key_axis], self.title(kind, index, step),
                                    label_every_head=False)
            yield f"attention/{kind}", f"sentence {index}", figure

    def report(self, model: EncoderDecoderTransformer, tracker, step: int) -> None:
        """Log every probe sentence's figures to ``tracker`` at ``step``."""
        for index in range(len(self.src_ids)):
            for title, series, figure in self.figures(model, index, step):
                tracker.log_figure(title, series, figure, step)

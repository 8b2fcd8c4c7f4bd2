"""A fixed probe batch whose attention maps are drawn as the model trains.

The same sentences at every report let a researcher watch heads specialise: diagonal
self-attention, alignment in cross-attention, the causal triangle in decoder self-attention.
"""

from dataclasses import dataclass

import torch

from src.models.transformer import EncoderDecoderTransformer

KINDS = {"encoder_self": ("source", "source"), "decoder_self": ("target", "target"), "cross": ("target", "source")}


def token_label(tokenizer, token_id: int) -> str:
    """The subword as a reader should see it: decoded text, a leading "▁" where a word starts.

    Byte-level BPE stores "ä" as "Ã¤"; decoding one token shows the real characters, unless the
    token holds only part of a multi-byte character, then the raw token is shown.
    """
    raw = tokenizer.id_to_token(token_id)
    text = tokenizer.decode([token_id], skip_special_tokens=False)
    if not text or "\ufffd" in text:
        return raw
    return "▁" + text[1:] if text.startswith(" ") else text


@dataclass
class AttentionProbe:
    """Token ids of a few sentences and their subword strings (the heatmap axis labels)."""

    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    src_tokens: list[list[str]]
    tgt_tokens: list[list[str]]

    @classmethod
    def from_ids(cls, src_ids: list[list[int]], tgt_ids: list[list[int]], src_tokenizer, tgt_tokenizer) -> "AttentionProbe":
        """``tgt_ids`` are full targets (BOS ... EOS); the decoder sees them without the final EOS."""
        tgt_in = [ids[:-1] for ids in tgt_ids]
        return cls(
            src_ids=src_ids,
            tgt_ids=tgt_in,
            src_tokens=[[token_label(src_tokenizer, i) for i in ids] for ids in src_ids],
            tgt_tokens=[[token_label(tgt_tokenizer, i) for i in ids] for ids in tgt_in],
        )

    @torch.no_grad()
    def attention(self, model: EncoderDecoderTransformer, index: int) -> dict[str, list[torch.Tensor]]:
        """Per-kind, per-layer attention weights (H, Tq, Tk) of probe sentence ``index``."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        src = torch.tensor([self.src_ids[index]], device=device)
        tgt = torch.tensor([self.tgt_ids[index]], device=device)
        _, attn = model(src, tgt, return_attention=True)
        model.train(was_training)
        return {kind: [layer[0].float().cpu() for layer in layers] for kind, layers in attn.items()}

    def figures(self, model: EncoderDecoderTransformer, index: int):
        """Yield (title, series, figure): one figure per attention kind and layer, heads side by side."""
        from src.visualization import plot_attention

        axes = {"source": self.src_tokens[index], "target": self.tgt_tokens[index]}
        for kind, layers in self.attention(model, index).items():
            query_axis, key_axis = KINDS[kind]
            for layer, weights in enumerate(layers):
                title = f"attention/{kind}"
                series = f"sentence {index} layer {layer}"
                yield title, series, plot_attention(weights, axes[query_axis], axes[key_axis], f"{kind} layer {layer}")

    def report(self, model: EncoderDecoderTransformer, tracker, step: int) -> None:
        for index in range(len(self.src_ids)):
            for title, series, figure in self.figures(model, index):
                tracker.log_figure(title, series, figure, step)

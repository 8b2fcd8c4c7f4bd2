"""Model hyperparameters (Vaswani et al. 2017, Table 3 names)."""

from typing import Literal

from pydantic import NonNegativeInt, PositiveInt, confloat, model_validator

from src.config.base import FrozenConfig

# keys that change no weight shape: a checkpoint loads into a model that differs from its own only in these
MODEL_KEYS_ALLOWED = frozenset({"dropout", "attention_dropout", "feed_forward_dropout", "attention_backend",
                                "rnn_fast", "init_from"})


class ModelConfig(FrozenConfig):
    """The model family, and the sizes and switches of its Transformer.

    The vocabulary size is not here: it is a property of the trained tokenizer and is passed to
    the model builder (``src/models/builders.py``) next to this config, as is a classifier's
    number of classes.
    """

    # encoder_decoder: translation (Vaswani et al. 2017); encoder_classifier: BERT-like text classifier;
    # lstm_classifier / gru_classifier / rnn_classifier: recurrent baselines, the last the plain Elman RNN
    # (d_model wide, n_encoder_layers deep);
    # decoder_lm: GPT-like language model (n_decoder_layers deep); vit: Vision Transformer
    # (Dosovitskiy et al. 2021, n_encoder_layers deep); encoder_mlm: the encoder classifier's encoder
    # with BERT's masked-LM head, for pretraining (src/models/masked_lm.py)
    family: Literal["encoder_decoder", "encoder_classifier", "lstm_classifier", "gru_classifier",
                    "rnn_classifier", "decoder_lm", "vit", "encoder_mlm"] = "encoder_decoder"
    pooling: Literal["cls", "mean"] = "cls"  # encoder_classifier: [CLS] state or mean of the real tokens
    rnn_bidirectional: bool = True  # lstm/gru/rnn_classifier: read the text both ways
    # lstm/gru/rnn_classifier: PyTorch's kernel on the same weights (False: the equations)
    rnn_fast: bool = True
    d_model: PositiveInt = 256
    n_heads: PositiveInt = 4
    n_encoder_layers: PositiveInt = 3
    n_decoder_layers: PositiveInt = 3
    d_ff: PositiveInt = 1024
    dropout: confloat(ge=0.0, lt=1.0) = 0.1
    attention_dropout: confloat(ge=0.0, lt=1.0) = 0.0
    # encoder layers: dropout on the feed-forward's inner activations (None = dropout, as
    # torch.nn.TransformerEncoderLayer); BERT has none there, so a Hugging Face BERT folder sets 0.0
    feed_forward_dropout: confloat(ge=0.0, lt=1.0) | None = None
    # gelu: the exact erf GELU (BERT, ViT); gelu_tanh: its tanh approximation (GPT-2's "gelu_new")
    activation: Literal["relu", "gelu", "gelu_tanh", "swiglu"] = "relu"
    norm_first: bool = False  # False = post-norm, the paper's placement (Sec. 3.1)
    # LayerNorm after each stack; None = only with pre-norm, which needs it. True with post-norm
    # reproduces torch.nn.Transformer, which adds it in both placements.
    final_norm: bool | None = None
    # decoder_lm also takes rope (Su et al. 2021: queries and keys rotated in every layer) and alibi (Press et
    # al. 2022: a per-head linear distance bias on the scores); both add nothing to the embeddings
    positional_encoding: Literal["sinusoidal", "learned", "rope", "alibi"] = "sinusoidal"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"  # decoder_lm: RMSNorm (Zhang & Sennrich 2019)
    # decoder_lm: key/value heads of grouped-query attention (Ainslie et al. 2023), dividing n_heads;
    # None = n_heads (multi-head), 1 = multi-query
    n_kv_heads: PositiveInt | None = None
    bias: bool = True  # decoder_lm: False drops every bias of its attention and feed-forward (Llama)
    rope_base: float = 10000.0  # the rotary frequencies' base (RoFormer's 10000; Llama 3: 500000)
    max_positions: PositiveInt = 256
    share_embeddings: bool = True  # one embedding table for source and target (Sec. 3.4)
    tie_output: bool = True  # output projection shares the target embedding (Sec. 3.4)
    attention_backend: Literal["sdpa", "math"] = "sdpa"
    # self-attention pattern (src/components/sliding_window_attention.py, longformer_attention.py):
    # full: every token sees every token, O(n^2); sliding_window: each token sees `window` tokens on
    # each side (causal: the `window` before it), O(n w); longformer: the sliding window plus the
    # `global_tokens` positions, which attend to every token and are attended by every token
    attention: Literal["full", "sliding_window", "longformer"] = "full"
    window: PositiveInt | None = None  # one-sided; Hugging Face's attention_window is 2 * window
    # longformer only (ignored otherwise): global positions ([CLS] is 0); those beyond a text's end are
    # skipped
    global_tokens: tuple[NonNegativeInt, ...] = (0,)
    layer_norm_eps: float = 1e-5
    # encoder_classifier, BERT's input (Devlin et al. 2019, Sec. 3): a LayerNorm (layer_norm_eps) on the sum
    # of the embeddings, without the sqrt(d_model) scale; and a token-type table of type_vocab_size rows
    # (BERT: 2; 0 = none; every text is type 0). With post-norm, learned positions, exact GELU and eps 1e-12
    # the encoder classifier is Hugging Face's BertForSequenceClassification (src/models/hf_weights.py)
    embedding_norm: bool = False
    type_vocab_size: NonNegativeInt = 0
    # the weights the run starts from instead of random ones (src/training/init_from.py): a Hugging Face
    # folder (BERT for encoder_classifier, GPT-2 for decoder_lm, ViT for vit), a checkpoint file, a run
    # folder, a run id or 'latest', a ClearML model id or NAME:TAG; the source's sizes win over these keys
    # (src/orchestration/init_source.py); None = random
    init_from: str | None = None
    # vit: square images of image_size pixels with in_channels channels, cut into patch_size patches
    image_size: PositiveInt = 28
    patch_size: PositiveInt = 4
    in_channels: PositiveInt = 1

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "ModelConfig":
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads} "
                f"(expected d_model % n_heads == 0, got remainder {self.d_model % self.n_heads})"
            )
        if self.family == "vit" and self.image_size % self.patch_size != 0:
            raise ValueError(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size} "
                             "(expected image_size % patch_size == 0, got remainder "
                             f"{self.image_size % self.patch_size})")
        if self.attention == "full" and self.window is not None:
            raise ValueError(f"model.window={self.window} is for attention='sliding_window' or 'longformer' "
                             "(got attention='full')")
        if self.attention != "full" and self.window is None:
            raise ValueError(f"model.attention={self.attention!r} needs model.window (tokens seen on each "
                             "side)")
        if len(set(self.global_tokens)) != len(self.global_tokens) or max(self.global_tokens,
                                                                          default=0) >= self.max_positions:
            raise ValueError("model.global_tokens must be distinct positions below "
                             f"max_positions={self.max_positions}, got {list(self.global_tokens)}")
        if self.attention == "longformer" and not self.global_tokens:
            raise ValueError("attention='longformer' needs at least one global token (e.g. global_tokens: "
                             "[0], the [CLS])")
        self._modern_blocks_fit()
        bert = {"embedding_norm": self.embedding_norm or None,
                "type_vocab_size": self.type_vocab_size or None}
        chosen = [f"model.{key}={value!r}" for key, value in bert.items() if value is not None]
        if chosen and self.family not in ("encoder_classifier", "encoder_mlm"):
            raise ValueError(f"{chosen[0]} is BERT's input of family='encoder_classifier' and 'encoder_mlm'; "
                             f"family={self.family!r} has no such embeddings")
        fits = {"encoder_classifier": {"full", "sliding_window", "longformer"},
                "encoder_mlm": {"full", "sliding_window", "longformer"},
                "decoder_lm": {"full", "sliding_window"}}.get(self.family, {"full"})
        if self.attention not in fits:
            raise ValueError(f"model.attention={self.attention!r} is not available for "
                             f"family={self.family!r} (it takes {sorted(fits)}: sliding windows pay off on "
                             "long inputs, and longformer's global tokens need a bidirectional encoder)")
        return self

    def _modern_blocks_fit(self) -> None:
        """RoPE, RMSNorm, grouped-query attention and bias-free layers are switches of the decoder LM and the
        encoder classifier; ALiBi, defined for causal models (Press et al. 2022, Sec. 3), of the decoder LM
        only."""
        modern = {"positional_encoding": self.positional_encoding if self.positional_encoding in (
            "rope", "alibi")
                  else None, "norm": "rmsnorm" if self.norm == "rmsnorm" else None,
                  "n_kv_heads": self.n_kv_heads, "bias": False if not self.bias else None}
        chosen = {key: value for key, value in modern.items() if value is not None}
        if chosen and self.family not in ("decoder_lm", "encoder_classifier", "encoder_mlm"):
            key, value = next(iter(chosen.items()))
            raise ValueError(f"model.{key}={value!r} is one of the modern blocks of family='decoder_lm' "
                             f"and 'encoder_classifier'; family={self.family!r} takes none of them")
        if self.positional_encoding == "alibi" and self.family != "decoder_lm":
            raise ValueError("positional_encoding='alibi' is a causal model's distance bias (Press et al. "
                             f"2022, Sec. 3); family={self.family!r} reads both ways: use rope")
        if self.positional_encoding == "rope" and self.attention == "longformer":
            raise ValueError("positional_encoding='rope' rotates the window's queries and keys, but "
                             "longformer's global projections carry no position: use sinusoidal or learned "
                             "with longformer")
        if self.n_kv_heads is not None and self.n_heads % self.n_kv_heads:
            raise ValueError(f"model.n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads} "
                             f"(expected a divisor of {self.n_heads}, got remainder "
                             f"{self.n_heads % self.n_kv_heads})")
        if self.positional_encoding == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError("positional_encoding='rope' rotates pairs of a head's dimensions: "
                             f"d_model/n_heads={self.d_model // self.n_heads} must be even")
        if self.positional_encoding == "alibi" and self.attention != "full":
            raise ValueError(f"positional_encoding='alibi' biases full attention scores; attention="
                             f"{self.attention!r} builds its own band (use rope or learned)")

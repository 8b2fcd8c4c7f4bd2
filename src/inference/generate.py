"""``generate`` subcommand: continue a prompt with a trained language model."""

import argparse
import sys

from loguru import logger

from src.arguments import NON_NEGATIVE_INT, NON_NEGATIVE_NUMBER, POSITIVE_INT, PROBABILITY, SEED


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    from src.inference.cli import add_backend_argument, add_common_arguments

    add_common_arguments(parser)
    add_backend_argument(parser)
    parser.add_argument("prompt", nargs="?", default=None,
                        help="text to continue; none: all of standard input is the prompt; an empty prompt "
                             "starts a new document")
    parser.add_argument("--max-new-tokens", type=NON_NEGATIVE_INT, default=200,
                        help="most tokens added (default 200)")
    parser.add_argument("--temperature", type=NON_NEGATIVE_NUMBER, default=0.8,
                        help="softmax temperature; 0 is greedy (default 0.8)")
    parser.add_argument("--top-k", type=POSITIVE_INT, default=None,
                        help="sample among the k most probable tokens only")
    parser.add_argument("--top-p", type=PROBABILITY, default=None,
                        help="nucleus sampling: the smallest set of tokens of probability mass p, 0 < p <= 1")
    parser.add_argument("--seed", type=SEED, default=None, help="random seed, for a reproducible sample")


def continue_text(trained, prompt: str, *, max_new_tokens: int, temperature: float, top_k: int | None = None,
                  top_p: float | None = None, seed: int | None = None) -> str:
    """The prompt followed by the model's continuation, as text."""
    import torch

    from src.models.sampling import generate

    from src.tasks.language_modeling.task import decode_stream

    tokenizer = trained.tokenizers["text"]
    encoding = tokenizer.encode(prompt)
    unknown = sorted({prompt[start:end] for token, (start, end) in zip(encoding.ids, encoding.offsets)
                      if token == trained.special_ids["unk"]})
    if unknown:
        logger.warning(f"the prompt has characters the model never saw in training, fed as <unk>: {unknown}")
    # (1 + prompt tokens,): every document starts with <s>
    prompt_ids = [trained.special_ids["bos"], *encoding.ids]
    generator = torch.Generator(device=trained.device).manual_seed(seed) if seed is not None else None
    ids = generate(trained.model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                   top_p=top_p,
                   generator=generator)
    text, echoed = decode_stream(tokenizer, ids[0].tolist()), decode_stream(tokenizer, prompt_ids)
    # the prompt as typed (its decoding loses characters the model never saw), then the continuation;
    # a new <s> the model writes starts a new paragraph
    return prompt + text[len(echoed):] if text.startswith(echoed) else text


def generate_command(args: argparse.Namespace) -> str:
    from src.inference.cli import utf8_text
    from src.inference.loader import load_for_inference
    from src.runs import resolve_checkpoint

    trained = load_for_inference(resolve_checkpoint(args.run, args.runs_dir), args.device,
                                 backend=args.backend)
    if trained.family != "decoder_lm":
        raise ValueError(f"{trained.path} holds a model of family {trained.family}; generate needs a "
                         "language model (task language_modeling, model.family decoder_lm)")
    if args.prompt is None:
        if sys.stdin.isatty():
            logger.info("reading the prompt from standard input; end with Ctrl-D")
        # bytes, decoded here: a byte that is not UTF-8 is named with its line, not a TypeError deep in the
        # tokenizer
        text = utf8_text(sys.stdin.buffer.read(), "standard input")
        args.prompt = text.replace("\r\n", "\n").rstrip("\n")  # universal newlines, as text-mode reading gave
    return continue_text(trained, args.prompt, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, seed=args.seed)

"""Fine-tuning options in the one training loop: layer-wise learning-rate decay (the optimizer's groups
follow lr * decay^(L - i)), frozen embeddings, and LoRA (frozen weights bit-identical after training,
a resume on the uninterrupted curve); the options a family cannot take are refused in one line."""

import random

import pytest
import torch

from src.config.base import ResumeError
from src.experiment import validate_config
from src.tasks.classification.task import ClassificationTask, LabelledCorpus
from src.tracking import NullTracker
from src.training.checkpoint import load_checkpoint
from src.training.trainer import Trainer

LAYERS = 3


def corpus(n: int, seed: int) -> LabelledCorpus:
    """Texts of random tokens, labelled by whether token 5 occurs: something a classifier can learn."""
    rng = random.Random(seed)
    ids = [[2] + [rng.randrange(4, 30) for _ in range(rng.randrange(4, 12))] for _ in range(n)]
    return LabelledCorpus(ids, [int(5 in text) for text in ids])


def make_trainer(run_dir, init_from=None, family="encoder_classifier", **training) -> Trainer:
    torch.set_num_threads(1)
    cfg = validate_config({
        "task": "classification", "output_dir": str(run_dir.parent), "run_name": run_dir.name,
        "data": {"source": "imdb"}, "tokenizer": {"max_tokens_per_sentence": 32},
        "batching": {"max_tokens": 96},
        "model": {"family": family, "d_model": 16, "n_heads": 2, "n_encoder_layers": LAYERS, "d_ff": 32,
                  "max_positions": 32, "init_from": init_from},
        "training": {"max_steps": 6, "warmup_steps": 2, "lr": 1e-2, "log_every": 1, "eval_every": 3,
                     "checkpoint_every": 2, "keep_checkpoints": 5, "weight_decay": 0.01, **training},
        "tracking": {"enabled": False},
    })
    task = ClassificationTask(train=corpus(64, 0), valid=corpus(16, 1), vocab_size=30, n_classes=2)
    return Trainer(cfg, task, run_dir, NullTracker())


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A checkpoint of a few full steps: what LoRA adapts."""
    return make_trainer(tmp_path_factory.mktemp("pretrained") / "run").fit().best_checkpoint


def test_layer_decay_gives_each_layer_lr_times_decay_to_the_layers_below_the_head(tmp_path):
    decay, lr = 0.5, 1e-2
    trainer = make_trainer(tmp_path / "run", layer_lr_decay=decay, warmup_steps=0, schedule="cosine")
    lr_of = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    for name, parameter in trainer.model.named_parameters():
        if name.startswith("embeddings."):
            expected = lr * decay ** (LAYERS + 1)  # the lowest
        elif name.startswith("encoder.layers."):
            i = int(name.split(".")[2])
            expected = lr * decay ** (LAYERS - i)
        else:  # the head (pooler and output layer)
            expected = lr
        assert lr_of[id(parameter)] == pytest.approx(expected, rel=1e-12), name
    for _ in range(3):  # the schedule scales every group alike: the ratios hold at every step
        trainer.optimizer.step()  # no gradients: nothing moves
        trainer.scheduler.step()
        head = trainer.optimizer.param_groups[0]["lr"]  # the group whose rate is logged: the head's
        assert head == pytest.approx(trainer.scheduler.get_last_lr()[0])
        for group in trainer.optimizer.param_groups:
            assert group["lr"] / head == pytest.approx(group["lr_scale"], rel=1e-12)
    assert head < lr  # the cosine has started to fall


def test_frozen_embeddings_do_not_move_while_the_rest_trains(tmp_path):
    trainer = make_trainer(tmp_path / "run", freeze_embeddings=True, max_steps=2)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.fit()
    for name, parameter in trainer.model.named_parameters():
        if name.startswith("embeddings."):
            assert torch.equal(parameter, before[name]), name
        elif name.endswith("weight") and parameter.dim() == 2:
            assert not torch.equal(parameter, before[name]), name


def test_lora_trains_adapters_and_head_only_and_the_checkpoint_says_so(tmp_path, pretrained):
    trainer = make_trainer(tmp_path / "run", init_from=str(pretrained), finetune="lora", lora_rank=2)
    start = load_checkpoint(pretrained)["model"]
    result = trainer.fit()
    state = load_checkpoint(result.last_checkpoint)
    assert state["lora"] == {"rank": 2, "alpha": 16.0, "targets": ["q", "v"]}
    moved = {name for name in state["model"] if name not in start or
             not torch.equal(state["model"][name], start[name])}
    adapters = {name for name in state["model"] if ".lora_A." in name or ".lora_B." in name}
    assert len(adapters) == 4 * LAYERS and moved - adapters == {n for n in start if n.startswith("head.")}
    for name, tensor in start.items():  # every pretrained weight outside the head: bit-identical
        if not name.startswith("head."):
            assert torch.equal(state["model"][name], tensor), name


def test_a_resumed_lora_run_follows_the_uninterrupted_one(tmp_path, pretrained):
    straight = make_trainer(tmp_path / "straight", str(pretrained), finetune="lora", lora_dropout=0.1).fit()
    first = make_trainer(tmp_path / "killed", str(pretrained), finetune="lora", lora_dropout=0.1, max_steps=4)
    first.fit()
    resumed = make_trainer(tmp_path / "killed", str(pretrained), finetune="lora", lora_dropout=0.1)
    assert resumed.resume() and resumed.step == 4
    curve = {row["step"]: row["loss"] for row in resumed.fit().history}
    for row in straight.history:
        assert curve[row["step"]] == pytest.approx(row["loss"], abs=1e-6), row["step"]


def test_a_resume_refuses_other_fine_tuning_settings(tmp_path, pretrained):
    make_trainer(tmp_path / "run", str(pretrained), finetune="lora", max_steps=2).fit()
    with pytest.raises(ResumeError, match=r"training.lora_rank=8, config asks 4 \(it decides which weights"):
        make_trainer(tmp_path / "run", str(pretrained), finetune="lora", lora_rank=4).resume()


@pytest.mark.parametrize("overrides, message", [
    ({"training": {"finetune": "lora", "lora_rank": 0}},
     "training.lora_rank=0: LoRA's rank r is the width of its update B A, expected an integer >= 1"),
    ({"model": {"family": "lstm_classifier"}, "training": {"finetune": "lora"}},
     "training.finetune=lora adapts the attention projections; model.family='lstm_classifier' has none"),
    ({"task": "translation", "data": {"source": "ding"}, "model": {"family": "encoder_decoder"},
      "training": {"layer_lr_decay": 0.8}},
     "training.layer_lr_decay orders one stack of layers from the embeddings up to the head; "
     "model.family='encoder_decoder' has two stacks"),
    ({"training": {"finetune": "lora", "freeze_embeddings": True}},
     "training.finetune=lora trains only the adapters and the head; layer_lr_decay and freeze_embeddings"),
])
def test_options_a_model_cannot_take_are_refused_with_the_reason(overrides, message):
    from src.config.base import ConfigError

    data = {"task": "classification", "data": {"source": "imdb"}, "model": {"family": "encoder_classifier"},
            "training": {}}
    data.update({k: ({**data.get(k, {}), **v} if isinstance(v, dict) else v) for k, v in overrides.items()})
    with pytest.raises(ConfigError) as err:
        validate_config(data)
    assert message in str(err.value)


@pytest.mark.parametrize("family, lowest, blocks, top", [
    ("decoder_lm", "token_embedding.weight", "decoder.layers.{i}.self_attn.in_proj.weight", "norm.weight"),
    ("vit", "embeddings.cls_token", "encoder.layers.{i}.feed_forward.linear1.weight", "head.weight"),
    ("lstm_classifier", "embeddings.weight", "rnn.rnn.weight_hh_l{i}_reverse", "head.out.weight"),
])
def test_every_stack_family_gets_the_layer_decay_by_depth(family, lowest, blocks, top):
    from src.config.model import ModelConfig
    from src.config.training import TrainingConfig
    from src.models.builders import build
    from src.training.finetune import optimizer_groups

    sizes = {"decoder_lm": {"vocab_size": 30, "pad_id": 0}, "vit": {"n_classes": 2},
             "lstm_classifier": {"vocab_size": 30, "n_classes": 2, "pad_id": 0}}[family]
    vit = {"image_size": 8, "patch_size": 4, "in_channels": 1} if family == "vit" else {}
    model = build(ModelConfig(family=family, d_model=8, n_heads=2, n_encoder_layers=LAYERS,
                              n_decoder_layers=LAYERS, d_ff=16, **vit), **sizes)
    groups = optimizer_groups(model, TrainingConfig(lr=1.0, layer_lr_decay=0.5))
    lr_of = {id(p): group["lr"] for group in groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named[lowest])] == 0.5 ** (LAYERS + 1) and lr_of[id(named[top])] == 1.0
    for i in range(LAYERS):
        assert lr_of[id(named[blocks.format(i=i)])] == 0.5 ** (LAYERS - i)
    assert sorted(map(id, model.parameters())) == sorted(lr_of)  # every parameter in exactly one group


def test_init_from_a_lora_checkpoint_starts_from_its_merged_weights(tmp_path, pretrained):
    from src.training.init_from import initialise_from

    run = make_trainer(tmp_path / "lora", str(pretrained), finetune="lora", lora_rank=2, max_steps=3)
    run.fit()
    tokens = run.task.batch(list(range(8)), torch.device("cpu"))[0]
    plain = make_trainer(tmp_path / "plain").model
    initialise_from(plain, str(run.checkpoints.path_for(3)), "encoder_classifier", 30)
    run.model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(tokens), run.model(tokens), rtol=0, atol=1e-5)

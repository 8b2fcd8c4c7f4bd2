"""The predictor, in the shape of clearml-serving's ``custom`` engine: ``load`` / ``preprocess`` /
``process`` / ``postprocess``.

The FastAPI app (``src/serving/app.py``) drives this class, and so can clearml-serving unchanged:
its custom engine imports a file defining ``Preprocess``, calls ``load`` with the local copy of
the registered model's weights, then per request ``preprocess(body) -> process -> postprocess``.
One ``Preprocess`` serves the family of the checkpoint it loads: translation (encoder_decoder),
text classification (encoder, LSTM, GRU, Elman RNN) or generation (decoder_lm).

Deploying it where a ClearML server and clearml-serving run (the project must be importable in
the inference container, e.g. ``CLEARML_EXTRA_PYTHON_PACKAGES`` plus this repository on
``PYTHONPATH``)::

    clearml-serving create --name "stepwise serving"        # prints the serving service id
    clearml-serving --id <service_id> model add --engine custom --endpoint "translate_de_en" \\
        --preprocess "src/serving/predictor.py" --name "<tracking.model_name>" --tags production \\
        --project "<tracking.project_name>"                 # or: --model-id <model id>
    curl -X POST "http://127.0.0.1:8080/serve/translate_de_en" -H "Content-Type: application/json" \\
        -d '{"texts": ["Das ist gut."], "beam": 4}'

A refused request raises ``BadRequest`` (a ``ValueError`` with its message); clearml-serving turns
an exception in ``preprocess`` into an error answer with that message (its status code depends on
the clearml-serving version; this server answers 422). Micro-batching is this project's server's own
addition: ``process_batch`` merges the jobs of several requests into one ``process`` call; clearml-serving
calls ``process`` per request.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from loguru import logger

from src.config.serving import SERVING_CONFIG_PATH, ServingConfig, load_serving_config
from src.serving.validation import (
    BadRequest,
    check_fields,
    check_int,
    check_number,
    check_prompt,
    check_texts,
    check_unicode,
)

TASKS = {"encoder_decoder": "translate", "encoder_classifier": "classify", "lstm_classifier": "classify",
         "gru_classifier": "classify", "rnn_classifier": "classify", "decoder_lm": "generate"}
FAMILIES_OF = {task: sorted(f for f, t in TASKS.items() if t == task) for task in set(TASKS.values())}
Statistics = Callable[[dict], None] | None
# /v1/generate: 0 is greedy; a positive temperature this small already is (logits / T then overflow to inf and
# the softmax gives NaN), and one this large already samples uniformly
TEMPERATURE_RANGE = (1e-3, 100.0)


class NonFiniteOutput(RuntimeError):
    """The model produced NaN or infinity: its answer would be wrong (or, as JSON, not serialisable)."""


class FiniteOutputs:
    """The model, with every output its callers decode checked: NaN or infinity raises ``NonFiniteOutput``.

    Wraps the PyTorch model or its ONNX Runtime twin alike: a graph exported wrongly (e.g. NaN for
    padded rows) must give an error, never an argmax over NaN (a wrong translation) or a NaN
    probability. Checked are the methods decoding, sampling and classifying take logits from:
    ``step_logits`` (translation) and calling the model (language model, classifiers).
    Everything else (``encode``, ``new_cache``, ``parameters``, ``pad_id``...) passes through.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def __getattr__(self, name: str) -> Any:
        if name == "model":  # not set yet (copy, pickle): no endless recursion through self.model
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return check_finite(self.model(*args, **kwargs), "forward")

    def step_logits(self, *args: Any, **kwargs: Any) -> Any:
        return check_finite(self.model.step_logits(*args, **kwargs), "step_logits")


def check_finite(logits: Any, call: str) -> Any:
    """``logits`` (B, ...) unchanged if finite; else ``NonFiniteOutput`` naming the rows (batch positions)."""
    import torch

    if isinstance(logits, torch.Tensor) and logits.dim() > 0 and not _all_finite(logits):
        rows = (~torch.isfinite(logits.float())).flatten(1).any(1) if logits.dim() > 1 else ~torch.isfinite(
            logits)
        bad = rows.nonzero().flatten().tolist()
        raise NonFiniteOutput(f"model output is not finite (NaN or infinity) for row{'s' * (len(bad) > 1)} "
                              f"{', '.join(map(str, bad[:10]))}{' ...' if len(bad) > 10 else ''} of a model "
                              f"call of {rows.numel()} row(s) ({call}, "
                              f"logits of shape {tuple(logits.shape)})")
    return logits


def _all_finite(logits: Any) -> bool:
    """Whether no value is NaN or infinite, from the smallest and largest value: min and max propagate NaN,
    and an infinity is one of them. Called on every decoding step's logits, (B, V): ``isfinite(x).all()``
    writes a (B, V) mask first and took 7x as long (1.4 ms against 0.2 ms at 16 x 8,000, one thread)."""
    import torch

    if logits.numel() == 0:
        return True
    low, high = torch.aminmax(logits.detach())
    return bool(torch.isfinite(low) & torch.isfinite(high))


@dataclass(frozen=True)
class Job:
    """The work of one request (or of several merged): a task, its inputs, and options shared by all
    inputs."""

    task: str
    inputs: list = field(default_factory=list)  # texts; for generate one dict of settings per prompt
    beam: int | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        """Jobs with equal keys can run in one model call.

        Every generate job has a key of its own: ``continue_text`` samples one prompt at a time, so a
        merged "batch" would only run the prompts one after another, each request waiting for all
        the others. Generation is not batched; ``id(self)`` is unique among the jobs queued together.
        """
        if self.task == "generate":
            return self.task, id(self)
        return self.task, self.beam

    @property
    def size(self) -> int:
        return len(self.inputs)


class Preprocess:
    """clearml-serving's custom engine class (the name is required there).

    Args:
        config: the serving limits; clearml-serving constructs it without arguments: then
            ``config/serving.yaml`` if the repository is there, else the defaults.
    """

    def __init__(self, config: ServingConfig | None = None) -> None:
        self.config = config or (load_serving_config() if SERVING_CONFIG_PATH.is_file() else ServingConfig())
        self.trained = None  # an InferenceModel once loaded

    @property
    def task(self) -> str:
        return TASKS[self.trained.family]

    def load(self, local_file_name: str) -> Any:
        """Rebuild the model from a self-contained checkpoint; a family it cannot serve is refused here, at
        start."""
        from src.inference.loader import load_for_inference

        backend = self.config.backend
        # with --backend onnx an encoder_mlm is refused by its export, for the same reason
        trained = load_for_inference(local_file_name, self.config.device, backend=backend)
        if trained.family == "encoder_mlm":
            raise ValueError(f"{local_file_name} holds an encoder_mlm, a pretrained encoder that predicts "
                             "masked tokens only, which the server does not serve; fine-tune a classifier "
                             "from it (model.init_from=RUN) and serve that")
        if trained.family not in TASKS:
            raise ValueError(f"{local_file_name} holds a {trained.family!r} model; the server serves "
                             f"{sorted(TASKS)} (images over HTTP are not served)")
        trained.model = FiniteOutputs(trained.model)
        self.trained = trained
        logger.info("loaded {} ({}, step {}) on {} with backend {}", local_file_name, trained.family,
                    trained.step,
                    trained.device, backend)
        return trained

    def preprocess(self, body: Any, state: dict, collect_custom_statistics_fn: Statistics = None) -> Job:
        """Check ``body`` against the loaded family's request shape and the limits; raise ``BadRequest`` if
        it fails."""
        check_unicode(body)  # the app's parse_json did; clearml-serving hands its own parsed dict
        job = {
            "translate": self._translate_job, "classify": self._classify_job, "generate": self._generate_job}[
            self.task](body)
        state.update(task=job.task, n_texts=job.size)
        if job.task == "generate":
            state["prompt"] = job.inputs[0]["prompt"]
        if collect_custom_statistics_fn:
            collect_custom_statistics_fn({"n_texts": job.size})
        return job

    def process(self, data: Job, state: dict, collect_custom_statistics_fn: Statistics = None) -> list:
        """One output per input of ``data``, in order: the model's work (run it off the event loop)."""
        from src.inference.classify import classify_texts
        from src.inference.generate import continue_text
        from src.inference.translate import translate_texts

        if data.task == "translate":
            return translate_texts(self.trained, data.inputs, beam=data.beam,
                                   batch_size=self.config.max_batch_size)
        if data.task == "classify":
            return classify_texts(self.trained, data.inputs, batch_size=self.config.max_batch_size)
        return [continue_text(self.trained, **settings) for settings in data.inputs]

    def postprocess(self, data: list, state: dict, collect_custom_statistics_fn: Statistics = None) -> dict:
        """The response body."""
        task = state.get("task", self.task)
        if task == "translate":
            return {"translations": data}
        if task == "classify":
            return {"predictions": data}
        prompt = state.get("prompt", "")
        return {"text": data[0],
                "continuation": data[0][len(prompt):] if data[0].startswith(prompt) else None}

    def process_batch(self, jobs: list[Job]) -> list[list]:
        """The outputs of each of ``jobs`` (same ``key``) from one ``process`` call over all their inputs."""
        merged = Job(jobs[0].task, [x for job in jobs for x in job.inputs], jobs[0].beam)
        outputs = self.process(merged, {})
        if len(outputs) != merged.size:
            raise RuntimeError(f"process returned {len(outputs)} outputs for {merged.size} inputs")
        starts = [0]
        for job in jobs:
            starts.append(starts[-1] + job.size)
        return [outputs[a:b] for a, b in pairwise(starts)]

    def describe(self) -> dict[str, Any]:
        """What ``/v1/model`` reports of the model itself."""
        from src.config import config_to_dict

        t = self.trained
        return {"family": t.family, "task": self.task, "step": t.step, "labels": list(t.labels),
                "config": config_to_dict(t.config), "backend": self.config.backend, "device": str(t.device)}

    # --- one request shape per task ------------------------------------------------------------

    def _translate_job(self, body: Any) -> Job:
        body = check_fields(body, ("texts",), ("beam",))
        texts = check_texts(body["texts"], self.config)
        return Job("translate", texts,
                   check_int(body, "beam", self.config.default_beam, 1, self.config.max_beam))

    def _classify_job(self, body: Any) -> Job:
        from src.data.text_classification import clean_html

        texts = check_texts(check_fields(body, ("texts",), ())["texts"], self.config)
        blank = [i for i, text in enumerate(texts) if not clean_html(text)]
        if blank:  # markup only: nothing left once cleaned as the training texts were
            raise BadRequest(f'"texts" at index {blank[:10]} hold no text once HTML tags are removed')
        return Job("classify", texts)

    def _generate_job(self, body: Any) -> Job:
        from src.models.sampling import check_sampling

        body = check_fields(body, ("prompt",), ("max_new_tokens", "temperature", "top_k", "top_p", "seed"))
        settings = {
            "prompt": check_prompt(body["prompt"], self.config),
            "max_new_tokens": check_int(body, "max_new_tokens", self.config.default_new_tokens, 1,
                                        self.config.max_new_tokens),
            "temperature": check_number(body, "temperature", 0.8, 0.0, TEMPERATURE_RANGE[1]),
            "top_k": check_int(body, "top_k", None, 1, None),
            "top_p": check_number(body, "top_p", None),
            "seed": check_int(body, "seed", None, 0, 2**63 - 1),
        }
        if 0 < settings["temperature"] < TEMPERATURE_RANGE[0]:
            raise BadRequest(f'"temperature" must be 0 (greedy) or between {TEMPERATURE_RANGE[0]:g} and '
                             f'{TEMPERATURE_RANGE[1]:g}, got {body["temperature"]!r}')
        try:
            check_sampling(settings["temperature"], settings["top_k"], settings["top_p"])
        except ValueError as err:
            raise BadRequest(str(err)) from None
        return Job("generate", [settings])

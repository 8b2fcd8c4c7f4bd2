"""The clearml-serving-shaped predictor in process: request checks, and outputs equal to the library's own."""

import math

import pytest

from src.config.serving import ServingConfig
from src.inference import load_for_inference
from src.inference.classify import classify_texts
from src.inference.generate import continue_text
from src.inference.translate import translate_texts
from src.serving.predictor import Job, Preprocess
from src.serving.validation import BadRequest

LIMITS = ServingConfig(max_texts_per_request=3, max_chars_per_text=20, max_beam=4)


@pytest.fixture(scope="module")
def predictors(checkpoints) -> dict[str, Preprocess]:
    loaded = {}
    for task, path in checkpoints.items():
        loaded[task] = Preprocess(LIMITS)
        loaded[task].load(str(path))
    return loaded


@pytest.mark.parametrize(("body", "message"), [
    ([], "expected a JSON object with fields ['texts', 'beam'], got array"),
    ({}, "missing field(s) ['texts']"),
    ({"texts": "Das ist gut."}, '"texts" must be a list of strings, got string'),
    ({"texts": []}, '"texts" is empty; expected 1 to 3 strings'),
    ({"texts": ["a", "b", "c", "d"]}, '"texts" has 4 strings; at most 3 per request'),
    ({"texts": ["a", 5, None]}, "not a string at index 1 (integer), 2 (null)"),
    ({"texts": ["a", "", "  \n"]}, '"texts" at index [1, 2] empty or whitespace only'),
    ({"texts": ["a", "x" * 21]},
     '"texts" at index 1 (21 characters) over the limit of 20 characters per text'),
    ({"texts": ["a"], "beam": "4"}, "\"beam\" must be an integer, got string '4'"),
    ({"texts": ["a"], "beam": True}, '"beam" must be an integer, got boolean True'),
    ({"texts": ["a"], "beam": 5}, '"beam" must be between 1 and 4, got 5'),
    ({"texts": ["a"], "extra": 1}, "unknown field(s) ['extra']; expected ['texts'] and optionally ['beam']"),
])
def test_translate_requests_are_checked_with_what_was_expected(predictors, body, message):
    with pytest.raises(BadRequest) as err:
        predictors["translate"].preprocess(body, {})
    assert message in str(err.value) and err.value.status == 422


@pytest.mark.parametrize(("body", "message"), [
    ({"prompt": 3}, '"prompt" must be a string, got integer'),
    ({"prompt": "x" * 21}, '"prompt" has 21 characters; at most 20'),
    ({"prompt": "ab", "temperature": -1}, '"temperature" must be a number between 0 and 100, got -1'),
    # a dict from clearml-serving need not come from a strict JSON parser: non-finite numbers are refused here
    # too
    ({"prompt": "ab", "temperature": float("nan")}, '"temperature" must be a finite number, got nan'),
    ({"prompt": "ab", "temperature": float("inf")}, '"temperature" must be a finite number, got inf'),
    ({"prompt": "ab", "top_p": float("nan")}, '"top_p" must be a finite number, got nan'),
    ({"prompt": "ab\ud800"}, "invalid Unicode in $.prompt: a lone surrogate \\ud800 at character 2"),
    ({"prompt": "ab", "top_p": 1.5}, "top_p must be in (0, 1]"),
    ({"prompt": "ab", "max_new_tokens": 0}, '"max_new_tokens" must be between 1 and 512, got 0'),
    ({"prompt": "ab", "seed": 1.5}, '"seed" must be an integer, got number 1.5'),
])
def test_generate_requests_are_checked(predictors, body, message):
    with pytest.raises(BadRequest) as err:
        predictors["generate"].preprocess(body, {})
    assert message in str(err.value)


def test_markup_only_text_is_refused_before_the_classifier_sees_it(predictors):
    with pytest.raises(BadRequest, match=r'"texts" at index \[1\] hold no text once HTML tags are removed'):
        predictors["classify"].preprocess({"texts": ["good", "<br /><b></b>"]}, {})


def test_translation_equals_translate_texts_and_a_merged_batch_splits_back(predictors, checkpoints):
    predictor = predictors["translate"]
    state: dict = {}
    job = predictor.preprocess({"texts": ["Das ist gut.", "Wo ist der Bahnhof?"], "beam": 2}, state)
    assert job == Job("translate", ["Das ist gut.", "Wo ist der Bahnhof?"], 2) and state["n_texts"] == 2
    trained = load_for_inference(checkpoints["translate"], "cpu")
    expected = translate_texts(trained, job.inputs, beam=2)
    assert predictor.postprocess(predictor.process(job, state), state) == {"translations": expected}
    jobs = [Job("translate", [text], 1) for text in ["Er liest ein Buch.", "Es regnet heute.",
                                                     "Das ist gut."]]
    assert predictor.process_batch(jobs) == [translate_texts(trained, j.inputs) for j in jobs]


def test_classification_gives_a_distribution_per_text_independent_of_its_batch(predictors, checkpoints):
    predictor = predictors["classify"]
    texts = ["A wonderful film.", "Dull <br />plot.", "ok"]
    state: dict = {}
    body = predictor.postprocess(predictor.process(predictor.preprocess({"texts": texts}, state), state),
                                 state)
    predictions = body["predictions"]
    assert [set(p["probabilities"]) for p in predictions] == [{"neg", "pos"}] * 3
    for p in predictions:
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    alone = [classify_texts(predictor.trained, [text])[0] for text in texts]  # padding changes nothing
    for one, batched in zip(alone, predictions):
        assert one["label"] == batched["label"]
        assert one["probabilities"] == pytest.approx(batched["probabilities"], abs=1e-6)


def test_generation_with_a_seed_repeats_and_equals_continue_text(predictors):
    predictor = predictors["generate"]
    request = {"prompt": "the cat", "max_new_tokens": 12, "temperature": 1.0, "seed": 7}
    answers = []
    for _ in range(2):
        state: dict = {}
        answers.append(predictor.postprocess(predictor.process(predictor.preprocess(request, state), state),
                                             state))
    expected = continue_text(predictor.trained, "the cat", max_new_tokens=12, temperature=1.0, seed=7)
    assert answers[0] == answers[1] == {"text": expected, "continuation": expected[len("the cat"):]}


def test_describe_reports_family_labels_config_and_backend(predictors):
    described = predictors["classify"].describe()
    assert (described["family"], described["task"], described["labels"]) == ("encoder_classifier", "classify",
                                                                             ["neg", "pos"])
    assert described["config"]["model"]["d_model"] == 32 and described["backend"] == "torch"


def test_concurrent_generate_requests_are_not_merged(predictors):
    """Generation runs one prompt per call: merged, each request would wait for every other prompt's
    sampling."""
    import asyncio

    from src.serving.batching import MicroBatcher

    predictor, calls = predictors["generate"], []

    def run_batch(jobs):
        calls.append(len(jobs))
        return predictor.process_batch(jobs)

    async def body():
        # a long window: merging would happen
        batcher = MicroBatcher(run_batch, window_ms=200.0, max_batch_size=32)
        batcher.start()
        try:
            jobs = [
                predictor.preprocess({"prompt": "the cat", "max_new_tokens": 4, "seed": s}, {}) for s in (
                    1, 1, 2)]
            return await asyncio.gather(*(batcher.submit(job) for job in jobs))
        finally:
            await batcher.close()

    answers = asyncio.run(body())
    assert calls == [1, 1, 1] and [(info.requests, info.inputs) for _, info in answers] == [(1, 1)] * 3
    assert answers[0][0] == answers[1][0]  # equal requests still get equal answers
    translations = [predictors["translate"].preprocess({"texts": ["a"]}, {}) for _ in range(2)]
    assert translations[0].key == translations[1].key  # translation still merges


def test_statistics_hook_gets_the_text_count(predictors):
    seen = []
    predictors["translate"].preprocess({"texts": ["a", "b"]}, {}, seen.append)
    assert seen == [{"n_texts": 2}]


@pytest.mark.parametrize(("task", "request_body", "call"), [
    ("translate", {"texts": ["Das ist gut.", "Es regnet heute."]}, "step_logits"),
    ("translate", {"texts": ["Das ist gut."], "beam": 3}, "step_logits"),
    ("generate", {"prompt": "the cat", "max_new_tokens": 3}, "forward"),
])
def test_a_model_that_outputs_nan_raises_naming_it_instead_of_decoding_it(checkpoints, task, request_body,
                                                                          call):
    """argmax over NaN logits picks a token all the same: without the check, a broken model (or a wrong ONNX
    export) translates and generates garbage silently. The classifier's case runs over HTTP
    (test_http_hardening)."""
    import math

    import torch

    from src.serving.predictor import NonFiniteOutput

    predictor = Preprocess(LIMITS)
    predictor.load(str(checkpoints[task]))
    with torch.no_grad():
        next(p for name, p in predictor.trained.model.named_parameters() if "norm" in name).fill_(math.nan)
    with pytest.raises(NonFiniteOutput,
                       match=rf"model output is not finite \(NaN or infinity\) for row.* \({call},"):
        predictor.process_batch([predictor.preprocess(request_body, {})])


def test_the_finite_check_finds_one_nan_or_infinity_anywhere_in_the_logits():
    """The check reads only the smallest and largest logit (it runs on every decoding step); one NaN, +inf
    or -inf at any position of any row must still fail it, as ``isfinite(x).all()`` would."""
    import torch

    from src.serving.predictor import NonFiniteOutput, check_finite

    g = torch.Generator().manual_seed(0)
    for shape in [(1, 7), (16, 8000), (32, 1), (5, 4, 9)]:
        logits = torch.randn(shape, generator=g)
        assert check_finite(logits, "step_logits") is logits
        for _ in range(20):
            position = tuple(int(torch.randint(0, size, (), generator=g)) for size in shape)
            for value in (math.nan, math.inf, -math.inf):
                broken = logits.clone()
                broken[position] = value
                with pytest.raises(NonFiniteOutput, match=f"row {position[0]} of a model call"):
                    check_finite(broken, "step_logits")

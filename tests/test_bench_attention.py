"""The attention scaling bench on tiny sizes: its JSON, its memory measurement, skips, slopes, tracking."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from src import bench_attention
from src.bench_attention import VARIANTS, runner, summary
from src.main import build_parser
from tests.clearml_session import read_offline_session
from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import clean_env

pytestmark = pytest.mark.timeout(180, method="thread")

REPO = Path(__file__).resolve().parents[1]
TINY = ["--d-model", "32", "--heads", "2", "--window", "16", "--d-ff", "64", "--repeats", "2",
        "--threads", "1", "--warmup-s", "0.02"]
MIB = 2**20


def _args(*argv: str):
    argv = ["bench", "attention", *TINY, *argv]
    return build_parser(argv).parse_args(argv)


def _settings(*argv: str) -> dict:
    return bench_attention.settings_from(_args(*argv))


def _run(settings: dict) -> dict:
    return bench_attention.run(settings)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:  # the tests using it are slow
    """``bench attention --json --track`` offline, as a command: every variant of the attention layer at n =
    64, 128.

    In its own process, as a user runs it: ClearML's background threads end with it instead of
    outliving the test into later ones (which may point the SDK at a stand-in server).
    """
    root = tmp_path_factory.mktemp("bench_attention")
    argv = ["bench", "attention", *TINY, "--lengths", "64,128", "--modules", "attention", "--json", "--track",
            "--offline", "--output-dir", str(root / "out")]
    assert build_parser(argv).parse_args(argv).handler.__name__ == "_cmd_bench_attention"
    proc = run_src_main(argv, clean_env(root / "home"), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (session_zip,) = (root / "out" / "clearml_offline").glob("*.zip")
    return SimpleNamespace(result=json.loads(proc.stdout), root=root,
                           session=read_offline_session(session_zip),
                           stderr=proc.stderr)


@pytest.mark.slow  # the tracked bench command runs once for these four, ~25-30 s
def test_with_track_nothing_but_the_result_reaches_stdout(tracked_run):
    """``--json --track | jq`` works (``json.loads(stdout)`` above): ClearML's own lines go to stderr."""
    assert "ClearML" in tracked_run.stderr


@pytest.mark.slow  # the tracked bench command runs once for these four, ~25-30 s
def test_json_has_one_record_per_variant_and_length_and_the_slopes(tracked_run):
    result = tracked_run.result
    assert {(r["module"], r["variant"], r["n"]) for r in result["results"]} == {
        ("attention", v, n) for v in VARIANTS for n in (64, 128)
    }
    assert len(result["results"]) == 8
    for record in result["results"]:
        assert not record.get("error"), record
        if "skipped" in record:
            assert record["skipped"] and record["time_ms"] is None
        else:
            assert record["time_ms"] > 0 and record["peak_mib"] >= 0 and len(record["times_ms"]) == 2
    assert set(result["slopes"]) == set(VARIANTS) == set(result["by_module"]["attention"]["slopes"])
    assert result["ratios"]["n"] == 128  # no 8192 here: the longest length measured
    assert set(result["meets_targets"]) == {*summary.TARGETS, "all"}
    assert result["settings"]["lengths"] == [64, 128] and result["settings"]["window"] == 16


@pytest.mark.slow  # the tracked bench command runs once for these four, ~25-30 s
def test_the_table_shows_every_variant_and_the_targets(tracked_run):
    text = summary.table(tracked_run.result)
    assert all(variant in text for variant in VARIANTS)
    assert "sliding_window_speedup_vs_full_sdpa" in text and "ratios at n=128" in text


@pytest.mark.slow  # the tracked bench command runs once for these four, ~25-30 s
def test_offline_tracking_holds_time_and_memory_against_n_a_figure_and_the_json(tracked_run):
    scalars = tracked_run.session.scalars
    for record in tracked_run.result["results"]:
        if "skipped" not in record:
            for key in ("time_ms", "peak_mib"):
                points = dict(scalars[(f"attention/{key}", record["variant"])])
                assert points[record["n"]] == pytest.approx(record[key])
    assert ("scaling", "attention") in {(image.title, image.series) for image in tracked_run.session.images}
    artifact = json.loads(tracked_run.session.read_bytes(tracked_run.session.artifacts["bench-attention"]))
    assert artifact["results"] == tracked_run.result["results"]
    assert tracked_run.session.task["type"] == "testing"
    assert (tracked_run.root / "out" / "results.json").is_file()


@pytest.mark.slow  # about 11 s
def test_the_encoder_layer_runs_in_every_variant():
    result = _run(_settings("--lengths", "64", "--modules", "encoder_layer"))
    assert [(r["variant"], "skipped" in r) for r in result["results"]] == [(v, False) for v in VARIANTS]
    assert all(r["time_ms"] > 0 and r["peak_mib"] > 0 for r in result["results"])
    assert set(result["by_module"]) == {"encoder_layer"}


def test_full_math_memory_grows_with_the_square_of_n():
    result = _run(_settings("--lengths", "256,1024", "--modules", "attention", "--variants", "full/math"))
    small, large = (r["peak_mib"] for r in result["results"])
    scores = 2 * 1024 * 1024 * 4 / MIB  # one (H, n, n) fp32 tensor at n=1024: 8 MiB
    assert 2 * scores < large < 6 * scores  # weights, their gradient, softmax's: a few such tensors
    assert large > 8 * small


def test_the_peak_of_a_tensor_of_known_size_is_its_size():
    code = (
        "import json, torch\n"
        "from src.bench_attention.measure import timed_peak\n"
        "def run_once():\n"
        "    x = torch.ones(64 * 2**20 // 4)\n"  # 64 MiB, every page written
        "    x.add_(1)\n"
        "print(json.dumps(timed_peak(run_once, 2, 'cpu')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["peak_mib"] == pytest.approx(64, abs=3)


def test_a_point_over_the_memory_limit_is_skipped_with_the_reason():
    result = _run(_settings("--lengths", "64,2048", "--modules", "attention", "--variants", "full/math",
                            "--max-memory-mib", "8"))  # fmt: skip
    measured, skipped = result["results"]
    assert measured["n"] == 64 and measured["time_ms"] > 0
    assert skipped["n"] == 2048 and skipped["time_ms"] is None and skipped["peak_mib"] is None
    assert "exceeds the memory limit of 8 MiB" in skipped["skipped"]
    assert result["slopes"]["full/math"] is None  # one point: no slope


def test_a_child_that_ran_out_of_memory_skips_the_longer_lengths(monkeypatch):
    launched = []

    def fake_child(job: dict, timeout_s: float) -> dict:
        launched.append(job["n"])
        return runner.outcome(-9, None, "") if job["n"] >= 128 else {"time_ms": 1.0, "peak_mib": 1.0}

    monkeypatch.setattr(runner, "run_child", fake_child)
    records = runner.measure_all(_settings("--lengths", "64,128,256", "--modules", "attention",
                                           "--variants", "full/math"))  # fmt: skip
    assert launched == [64, 128]
    assert "OOM killer" in records[1]["skipped"]
    assert records[2]["skipped"] == "ran out of memory at n=128 already"


def test_a_failing_child_is_an_error_record_naming_the_last_line():
    record = runner.outcome(1, None, "Traceback (most recent call last):\nTypeError: bad window\n")
    assert record == {"skipped": "failed (exit status 1): TypeError: bad window", "error": True}


def test_a_child_that_exits_cleanly_without_its_result_file_is_an_error_record():
    assert runner.outcome(0, None, "")["error"] is True
    assert runner.outcome(0, '{"time_ms": 2.5, "peak_mib": 3.0}', "") == {"time_ms": 2.5, "peak_mib": 3.0}


@pytest.mark.parametrize("exponent", [1.0, 1.1, 2.0])
def test_the_slope_of_an_exact_power_law_is_its_exponent(exponent):
    ns = [512, 1024, 2048, 4096, 8192, 16384]
    assert summary.log_log_slope(ns, [3.0 * n**exponent for n in ns]) == pytest.approx(exponent, abs=1e-12)


def _power_law_records(sliding_exponent: float) -> list[dict]:
    """time = c 8192 (n/8192)^e, peak = m n^f: sliding_window 10.24x faster than full/sdpa at n=8192."""
    time = {"full/math": (0.8192, 2.0), "full/sdpa": (0.8192, 2.0),
            "sliding_window": (0.08, sliding_exponent), "longformer": (0.09, 1.0)}
    peak = {"full/math": (1e-3, 2.0), "full/sdpa": (1e-2, 1.0), "sliding_window": (1.2e-2, 1.0),
            "longformer": (1.3e-2, 1.0)}
    return [
        {"module": "attention", "variant": v, "n": n, "time_ms": time[v][0] * 8192 * (n / 8192) ** time[v][1],
         "peak_mib": peak[v][0] * n ** peak[v][1]}
        for v in VARIANTS for n in (2048, 4096, 8192, 16384)
    ]  # fmt: skip


def test_ratios_are_taken_at_8192_and_judged_against_the_targets():
    settings = _settings("--lengths", "2048,4096,8192,16384", "--modules", "attention")
    result = summary.summarise(settings, _power_law_records(sliding_exponent=1.0))
    ratios = result["ratios"]
    assert ratios["n"] == 8192
    assert ratios["sliding_window_speedup_vs_full_sdpa"] == pytest.approx(0.8192 / 0.08)
    assert ratios["sliding_window_memory_vs_full_sdpa"] == pytest.approx(1.2)
    assert ratios["full_math_memory_vs_sliding_window"] == pytest.approx(1e-3 * 8192 / 1.2e-2)  # 683
    # the speed-ups at 16,384 too: full attention 4x slower there, the band 2x
    assert ratios["sliding_window_speedup_vs_full_sdpa at 16384"] == pytest.approx(4 * 0.8192 / (2 * 0.08))
    assert ratios["longformer_speedup_vs_full_sdpa at 16384"] == pytest.approx(4 * 0.8192 / (2 * 0.09))
    assert result["slopes"] == pytest.approx({"full/math": 2.0, "full/sdpa": 2.0, "sliding_window": 1.0,
                                              "longformer": 1.0})  # fmt: skip
    assert result["meets_targets"] == dict.fromkeys([*summary.TARGETS, "all"], True)

    steeper = summary.summarise(settings, _power_law_records(sliding_exponent=1.5))
    assert steeper["slopes"]["sliding_window"] == pytest.approx(1.5)
    assert steeper["meets_targets"]["slope sliding_window"] is False
    assert steeper["meets_targets"]["all"] is False
    at_8192 = {name: value for name, value in ratios.items() if not name.endswith(" at 16384")}
    assert {name: steeper["ratios"][name] for name in at_8192} == pytest.approx(at_8192)  # the same at 8192
    assert steeper["ratios"]["sliding_window_speedup_vs_full_sdpa at 16384"] == pytest.approx(
        4 * 0.8192 / (2**1.5 * 0.08))


def test_a_ratio_whose_variant_was_not_measured_is_none_and_all_is_unknown():
    records = [r for r in _power_law_records(sliding_exponent=1.0) if r["variant"] != "full/math"]
    settings = _settings("--lengths", "2048,4096,8192,16384", "--modules", "attention")
    result = summary.summarise(settings, records)
    assert result["ratios"]["n"] == 8192 and result["ratios"]["full_math_memory_vs_sliding_window"] is None
    assert result["ratios"]["sliding_window_speedup_vs_full_sdpa"] == pytest.approx(0.8192 / 0.08)
    assert result["meets_targets"]["full_math_memory_vs_sliding_window"] is None
    assert result["meets_targets"]["all"] is None


def test_bench_without_a_sub_benchmark_is_still_the_transformer_bench():
    argv = ["bench", "--json", "--repeats", "2"]
    args = build_parser(argv).parse_args(argv)
    assert args.handler.__name__ == "_cmd_bench" and args.repeats == 2 and args.benchmark is None


def test_unknown_variants_and_bad_lengths_are_usage_errors():
    for bad in (["--variants", "full/flash"], ["--lengths", "0,64"], ["--lengths", "a"]):
        with pytest.raises(SystemExit):
            _args(*bad)
    with pytest.raises(ValueError, match="d_model=30 is not divisible by heads=4"):
        _settings("--d-model", "30", "--heads", "4")

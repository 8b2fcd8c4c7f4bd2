"""The load benchmark end to end on a tiny checkpoint: both modes, every concurrency, no errors (slow: ~25
s)."""

import json

import pytest

from src.serving import bench


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_reports_both_modes_at_each_concurrency(checkpoints, capsys):
    code = bench.main([str(checkpoints["translate"]), "--requests", "48", "--concurrency", "1", "8",
                       "--torch-threads", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["family"] == "encoder_decoder" and result["task"] == "translate"
    assert [(r["mode"], r["concurrency"]) for r in result["rows"]] == [
        ("batching on", 1), ("batching on", 8), ("batching off", 1), ("batching off", 8)]
    for row in result["rows"]:
        assert row["errors"] == 0 and row["requests"] == 48 and 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["sentences_per_s"] > 0
    fastest_single = max(r["sentences_per_s"] for r in result["rows"] if r["concurrency"] == 1)
    assert result["speedup_batching_c8_over_sequential"] == pytest.approx(
        result["rows"][1]["sentences_per_s"] / fastest_single, abs=0.01)


def test_report_table_lists_every_row_and_the_speedups():
    result = {"model": "m", "family": "encoder_decoder", "backend": "torch", "window_ms": 5.0,
              "max_batch_size": 32,
              "rows": [{"mode": "batching on", "concurrency": 16, "requests": 10, "errors": 0,
                        "sentences_per_s": 99.5,
                        "p50_ms": 10.0, "p99_ms": 20.0}], "speedup_batching_c16_over_sequential": 3.2}
    table = bench.report(result).splitlines()
    assert table[0].startswith("m (encoder_decoder, torch), micro-batching window 5.0 ms, max batch 32")
    assert table[2].split() == ["batching", "on", "16", "10", "0", "99.5", "10.0", "20.0"]
    assert table[3] == "speedup_batching_c16_over_sequential: 3.2x"

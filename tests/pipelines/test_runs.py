"""What a user does with runs after training: two runs stay apart, list/compare them, translate and
evaluate with them, resume them only when the checkpoint can follow, and read why a run failed."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.clearml_stub.stub import run_src_main
from tests.pipelines.conftest import STEPS, clean_env

pytestmark = pytest.mark.timeout(400)


def cli(tiny_runs, *args, timeout=120, stdin=None):
    return run_src_main(list(args), tiny_runs.env, timeout, stdin=stdin)


def test_two_identical_train_commands_leave_two_intact_separate_runs(tiny_runs):
    first, second = tiny_runs.run_dirs
    assert first != second and first.parent == second.parent == tiny_runs.runs_dir
    assert (tiny_runs.runs_dir / "latest").resolve() == second.resolve()
    for run_dir in (first, second):
        status = json.loads((run_dir / "status.json").read_text())
        assert (status["status"] == "completed" and status["run_id"] == run_dir.name
                and status["run_name"] == "tiny")
        assert all(status["steps"][s]["status"] == "completed" for s in STEPS)
        history = [
            json.loads(line) for line in (run_dir / "train" / "train_history.jsonl").read_text().splitlines()]
        steps = [row["step"] for row in history if "loss" in row]
        assert steps == sorted(steps) and steps[-1] == 30  # one run's curve, not two interleaved
        assert sorted(p.name for p in (run_dir / "train" / "checkpoints").glob("step_*.pt")) == [
            "step_00000020.pt", "step_00000030.pt"]
        config = json.loads((run_dir / "config.json").read_text())
        assert config["run_id"] == run_dir.name
    ids = [json.loads((d / "status.json").read_text())["steps"]["train"]["task_id"] for d in (first, second)]
    assert ids[0] != ids[1]  # two ClearML tasks, as two experiments


def test_runs_list_shows_both_runs_and_compare_sets_them_side_by_side(tiny_runs):
    listed = cli(tiny_runs, "runs", "list", "--runs-dir", str(tiny_runs.runs_dir))
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [line for line in listed.stdout.splitlines() if line.startswith("tiny-")]
    assert [row.split()[0] for row in rows] == [d.name for d in tiny_runs.run_dirs]
    assert all(" completed " in row and " 5/5 " in row for row in rows)
    compared = cli(tiny_runs, "runs", "compare", *map(str, tiny_runs.run_dirs))
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert "(none: same config)" in compared.stdout  # the same command twice
    metrics = json.loads((tiny_runs.run_dirs[0] / "evaluate" / "metrics.json").read_text())
    bleu_row = next(line for line in compared.stdout.splitlines() if line.startswith("BLEU beam"))
    assert f"{metrics['beam']['bleu']:.2f}" in bleu_row


def test_translate_arguments_and_stdin_with_a_run(tiny_runs):
    run = str(tiny_runs.run_dirs[0])
    args = cli(tiny_runs, "translate", run, "Ich habe keine Zeit.", "Das ist gut.", "--beam", "2",
               "--max-len", "12")
    assert args.returncode == 0, args.stderr[-2000:]
    assert len(args.stdout.split("\n")) == 3  # two translations and the final newline
    piped = cli(tiny_runs, "translate", "latest", "--runs-dir", str(tiny_runs.runs_dir),
                stdin="Ich habe keine Zeit.\n\nDas ist gut.\n")
    assert piped.returncode == 0, piped.stderr[-2000:]
    lines = piped.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # 3 lines in, 3 out (+ the final newline)


def test_translate_with_a_checkpoint_copied_alone_into_an_empty_folder(tiny_runs, tmp_path):
    alone = tmp_path / "empty" / "model.pt"
    alone.parent.mkdir()
    shutil.copy(tiny_runs.run_dirs[0] / "train" / "checkpoints" / "best.pt", alone)
    from_file = cli(tiny_runs, "translate", str(alone), "Ich habe keine Zeit.", "--max-len", "12")
    from_run = cli(tiny_runs, "translate", str(tiny_runs.run_dirs[0]), "Ich habe keine Zeit.", "--max-len",
                   "12")
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    assert from_file.stdout == from_run.stdout and from_file.stdout.strip()
    assert list(alone.parent.iterdir()) == [alone]  # nothing else was needed, nothing was written


def test_evaluate_a_run_on_its_test_split_matches_the_evaluate_step(tiny_runs, tmp_path):
    run_dir = tiny_runs.run_dirs[0]
    out = tmp_path / "m.json"
    proc = cli(tiny_runs, "evaluate", str(run_dir), "--max-sentences", "24", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours, step = json.loads(out.read_text()), json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert ours["n_sentences"] == step["n_sentences"] == 24  # tiny.yaml: evaluation.max_test_sentences 24
    for name in ("greedy", "beam"):
        assert (ours[name]["bleu"] == pytest.approx(step[name]["bleu"])
                and ours[name]["chrf"] == pytest.approx(step[name]["chrf"]))
    assert ours["test"]["loss"] == pytest.approx(step["test"]["loss"], rel=1e-5)
    assert f"BLEU:        {ours['beam']['bleu']:.2f} (beam)" in proc.stdout


def test_evaluate_on_a_file_of_pairs(tiny_runs, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("de\ten\nIch habe keine Zeit.\tI have no time.\nDas ist gut.\tThat is good.\n",
                     encoding="utf-8")
    proc = cli(tiny_runs, "evaluate", str(tiny_runs.run_dirs[0]), "--split", str(pairs))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [pairs]  # issue 26: the metrics went beside the user's data file
    path = next((tiny_runs.run_dirs[0] / "evaluate").glob("metrics_file-pairs.tsv_*.json"))
    written = json.loads(path.read_text())
    path.unlink()  # the shared run stays as it was
    assert (written["n_sentences"] == 2 and written["split"] == str(pairs)
            and f"written to:  {path}" in proc.stdout)


def test_resume_with_a_changed_model_width_fails_in_one_line_naming_the_key(tiny_runs):
    run_dir = tiny_runs.run_dirs[1]
    before, config = (run_dir / "status.json").read_text(), (run_dir / "config.json").read_text()
    proc = cli(tiny_runs, "train", "--resume", str(run_dir), "model.d_model=64")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert (len(errors) == 1
            and "checkpoint has model.d_model=32, config asks 64" in errors[0]), proc.stderr[-2000:]
    assert "size mismatch" not in proc.stderr and "Traceback" not in proc.stderr
    assert (run_dir / "status.json").read_text() == before  # refused before anything ran
    assert (run_dir / "config.json").read_text() == config


def test_resume_with_a_changed_vocabulary_does_not_reuse_the_old_one(tiny_runs):
    run_dir = tiny_runs.run_dirs[1]
    proc = cli(tiny_runs, "train", "--config", "config/tiny.yaml", "--resume", str(run_dir),
               "tokenizer.vocab_size=300")
    assert proc.returncode == 2
    assert "used tokenizer.vocab_size=500, config asks 300" in proc.stderr
    vocab = json.loads(
        torch.load(run_dir / "train" / "checkpoints" / "best.pt", weights_only=True)["tokenizers"]["src"])
    assert len(vocab["model"]["vocab"]) == 500  # the run keeps its own vocabulary, untouched


def test_a_five_row_corpus_fails_before_training_naming_the_empty_split(tmp_path):
    corpus = tmp_path / "five.tsv"
    corpus.write_text("de\ten\n" + "".join(f"Satz Nummer {i}.\tSentence number {i}.\n" for i in range(5)))
    env = clean_env(tmp_path / "home")
    proc = run_src_main(["train", "--config", "config/tiny.yaml", f"output_dir={tmp_path / 'runs'}",
                         "data.source=local",
                         f"data.local_path={corpus}", "data.src_column=de", "data.tgt_column=en"], env, 120)
    assert proc.returncode == 1
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if not p.is_symlink()]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["failed_step"] == "data_prep" and "train" not in status["steps"]
    assert "SplitTooSmallError: the validation split has 0 pairs of 5 kept" in status["reason"]
    assert "the validation split has 0 pairs" in proc.stderr


def test_an_offline_reader_finds_curves_samples_and_validation_history(tiny_runs):
    run_dir = tiny_runs.run_dirs[0]
    curves = sorted(p.name for p in (run_dir / "train" / "plots" / "curves").glob("*.png"))
    assert curves == ["learning_rate_step0000030.png", "loss_step0000030.png"]
    rows = [json.loads(line) for line in (run_dir / "train" / "train_history.jsonl").read_text().splitlines()]
    valid = [row for row in rows if "valid_loss" in row]
    assert [row["step"] for row in valid] == [15, 30]  # tiny.yaml: eval_every 15
    assert all(row["valid_perplexity"] == pytest.approx(2.718281828 ** row["valid_loss"]) for row in valid)
    header, *lines = (run_dir / "evaluate" / "samples.tsv").read_text(encoding="utf-8").splitlines()
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert header.split("\t") == ["source", "reference", "greedy", "beam"]
    assert len(lines) == metrics["n_sentences"] and all(len(line.split("\t")) == 4 for line in lines)
    for checkpoint in (run_dir / "train" / "checkpoints").glob("*.pt"):  # every checkpoint describes itself
        state = torch.load(checkpoint, weights_only=True)
        assert {"format", "family", "config", "tokenizers", "special_ids"} <= set(state), checkpoint


def test_a_resume_continues_the_run_reusing_its_data_steps(tiny_runs, tmp_path):
    """On a copy of a finished run, moved elsewhere: train 10 more steps, overrides on both sides of
    --resume."""
    runs_dir = tmp_path / "moved"
    run_dir = runs_dir / tiny_runs.run_dirs[0].name
    shutil.copytree(tiny_runs.run_dirs[0], run_dir, symlinks=True)
    config = (run_dir / "config.json").read_text()
    refused = cli(tiny_runs, "train", "--resume", str(run_dir))
    assert refused.returncode == 2 and "is complete: nothing to resume" in refused.stderr
    assert (run_dir / "config.json").read_text() == config  # a refused resume leaves the run as it was
    proc = cli(tiny_runs, "train", "training.max_steps=40", "--resume", run_dir.name, "training.eval_every=5",
               f"output_dir={runs_dir}", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step data_prep: reusing the completed output" in proc.stderr and "resuming from" in proc.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed" and status["steps"]["train"]["output"]["steps"] == 40
    # not the original's
    assert status["steps"]["tokenize"]["output"]["tokenized_dir"] == str(run_dir / "tokenize")
    assert status["resumes"][-1]["changes"] == {"training.max_steps": [30, 40],
                                                "training.eval_every": [15, 5]}
    # training changed: train and after run again
    assert status["resumes"][-1]["reused"] == ["data_prep", "tokenize"]
    rows = [json.loads(line) for line in (run_dir / "train" / "train_history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "valid_loss" in r] == [15, 30, 35, 40]  # continued, not restarted
    assert (runs_dir / "latest").resolve() == run_dir.resolve()
    assert json.loads((run_dir / "config.json").read_text())["training"]["max_steps"] == 40


def test_resume_and_queue_together_are_refused(tiny_runs):
    proc = cli(tiny_runs, "train", "--queue", "gpu", "--resume", str(tiny_runs.run_dirs[0]))
    assert proc.returncode == 2 and "cannot be combined with --queue" in proc.stderr


def test_the_tiny_loss_curve_is_the_recorded_one(tiny_runs):
    """No silent change to the training arithmetic: the curve recorded before refactoring the loop, to
    1e-6."""
    recorded = json.loads((Path(__file__).parent / "fixtures" / "tiny_loss_curve.json").read_text())["loss"]
    for run_dir in tiny_runs.run_dirs:
        rows = [
            json.loads(line) for line in (run_dir / "train" / "train_history.jsonl").read_text().splitlines()]
        curve = {str(row["step"]): row["loss"] for row in rows if "loss" in row}
        assert curve.keys() == recorded.keys()
        for step, loss in recorded.items():
            assert curve[step] == pytest.approx(loss, abs=1e-6), f"step {step}"

"""`dlrun report` on folders written by hand (summary.json, metrics.jsonl, .hydra/overrides.yaml): tables
that fit a piped log, several folders and globs, legends that name what differs, plots with every text whole."""
import io
import json
import math
import random
import re
from pathlib import Path

from rich.console import Console

from conftest import assert_clean_error, run_dlrun
from test_plotter import saved  # noqa: F401 (a fixture)

# an Optuna search's trials: five float parameters with all their digits, two settings shared by all
OPTUNA = [["hparams_search=digits_optuna", "debug=smoke", f"optimizer.lr={lr}", f"optimizer.weight_decay={wd}",
           f"model.dropout={d}", f"trainer.batch_size={bs}", f"model.hidden={h}"]
          for lr, wd, d, bs, h in [(0.004430375245218269, 0.0007257005721594283, 0.30138168803582194, 128, "[512,256]"),
                                   (0.0014135935551752314, 0.001468588598920087, 0.26444745987645224, 64, "[512,256]"),
                                   (0.021600820741402058, 0.003020289640158668, 0.489309171116382, 32, "[256,128]"),
                                   (0.06823, 0.00012234, 0.2073, 64, "[128]")]]


def write_run(folder: Path, overrides: list[str], seed: int = 0, epochs: int = 4) -> Path:
    """The files a completed classification run leaves, with made-up learning curves."""
    rng = random.Random(seed)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- '{o}'\n" for o in overrides))
    rows = []
    for epoch in range(1, epochs + 1):
        loss = 2.3 * math.exp(-epoch * rng.uniform(0.1, 0.6))
        rows.append({"epoch": epoch, "train_loss": 1.1 * loss, "train_accuracy": 1 - loss / 2.4, "val_loss": loss,
                     "val_accuracy": 1 - loss / 2.5, "lr": 0.001, "epoch_time": 0.1})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({
        "status": "completed", "test_accuracy": rows[-1]["val_accuracy"], "test_loss": rows[-1]["val_loss"],
        "epochs_completed": epochs, "best_epoch": epochs, "wall_time": 3.25 + seed}))
    return folder


def table_of(out: str) -> str:
    return out[:out.index("wrote ")]


def test_an_optuna_search_shows_rounded_values_that_fit_a_pipe(tmp_path):
    for i, overrides in enumerate(OPTUNA):
        write_run(tmp_path / "search" / str(i), overrides, seed=i)
    proc = run_dlrun("report", str(tmp_path / "search"))  # a pipe: rich alone would squeeze it into 80 columns
    assert proc.returncode == 0, proc.stderr
    table = table_of(proc.stdout)
    assert "…" not in table, table
    for shown in ("optimizer.lr=0.00443", "optimizer.weight_decay=0.0007257", "model.dropout=0.3014",
                  "trainer.batch_size=128", "model.hidden=[512,256]", "optimizer.lr=0.06823"):
        assert shown in table, table
    assert "0.004430375" not in table  # rounded to 4 significant digits; report.csv keeps every digit
    assert "same in every row: hparams_search=digits_optuna, debug=smoke, status=completed, epochs=4" in table
    assert "0.004430375245218269" in (tmp_path / "search" / "report.csv").read_text()


def test_a_folder_of_single_runs_folds_many_differing_settings_into_one_column(tmp_path):
    settings = ["optimizer=sgd", "optimizer.lr=0.01", "model=cnn", "trainer.batch_size=32 seed=3",
                "model.dropout=0.3", "scheduler=cosine", "trainer.max_grad_norm=1.0 loss.label_smoothing=0.1"]
    for i, extra in enumerate(settings):
        write_run(tmp_path / "outputs" / f"run{i}", ["trainer.epochs=4", "logger=quiet", *extra.split()], seed=i)
    proc = run_dlrun("report", str(tmp_path / "outputs"), env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    table = table_of(proc.stdout)
    assert "…" not in table, table
    header = next(ln for ln in table.splitlines() if "overrides" in ln)
    assert [cell.strip() for cell in header.split("┃")[1:3]] == ["job", "overrides"]  # not 12 columns of "…"
    rows = {m.group(1): m.group(2).strip() for m in re.finditer(r"│ (run\d)\s+│ ([^│]+)│", table)}
    assert rows["run3"] == "trainer.batch_size=32 seed=3" and rows["run6"].startswith("trainer.max_grad_norm=1")
    assert "same in every row: trainer.epochs=4, logger=quiet" in table


def test_several_folders_and_globs_are_reported_together_in_their_common_parent(tmp_path):
    for i in range(2):
        write_run(tmp_path / "sweep_a" / str(i), ["model=mlp", f"seed={i}"], seed=i)
        write_run(tmp_path / "sweep_b" / str(i), ["model=cnn", f"seed={i}"], seed=i + 2)
    (tmp_path / "notes.txt").write_text("not a run")
    for args in ([str(tmp_path / "sweep_a"), str(tmp_path / "sweep_b")],  # DIR1 DIR2
                 [str(tmp_path / "sweep_*")],                             # a glob the shell left alone
                 [str(tmp_path / "sweep_a"), str(tmp_path / "notes.txt"), str(tmp_path / "sweep_b" / "1"),
                  str(tmp_path / "sweep_b" / "0")]):                      # what a shell's * gives: files skipped
        proc = run_dlrun("report", *args)
        assert proc.returncode == 0, proc.stderr
        names = sorted(r.split(",")[0] for r in (tmp_path / "report.csv").read_text().splitlines()[1:])
        assert names == ["sweep_a/0", "sweep_a/1", "sweep_b/0", "sweep_b/1"], (args, names)
        assert (tmp_path / "curves.png").stat().st_size > 10_000
        (tmp_path / "report.csv").unlink()
    proc = run_dlrun("report", str(tmp_path / "sweep_a"), str(tmp_path / "sweep_b"), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0 and (tmp_path / "rep" / "report.csv").exists(), proc.stderr
    assert_clean_error(run_dlrun("report", str(tmp_path / "nothing_*")), 2, "nothing matches")
    assert_clean_error(run_dlrun("report", str(tmp_path / "sweep_a"), str(tmp_path / "gone")), 2, "no such folder")


def test_curves_legend_names_what_differs_outside_the_plots_at_20_runs(tmp_path, saved):
    from dlrun.report import report

    root = tmp_path / ("a_folder_with_a_rather_long_name_" * 5)  # a long title, to be wrapped
    for i in range(19):  # each run sets only some of the keys that differ
        write_run(root / f"run{i}", ["debug=smoke", f"optimizer.lr={10 ** -(i % 4 + 1) / 3}"]
                  + ([f"seed={i % 3}"] if i % 2 else []) + ([f"model.hidden=[{32 * (i // 4 + 1)}]"] if i > 9 else []),
                  seed=i)
    write_run(root / "baseline", ["debug=smoke"], seed=99)  # none of them: named by its folder
    report(root, console=Console(file=io.StringIO()))
    (curves,) = [s for s in saved if s["path"].endswith("curves.png")]
    assert curves["clipped"] == [] and curves["size"][0] >= 500, curves["clipped"]
    assert not curves["legend_covers"], "the legend covers a plot"
    labels = curves["legend"]
    assert len(labels) == 20 and "baseline" in labels, labels
    assert all("=-" not in label and "debug=" not in label for label in labels), labels
    assert "optimizer.lr=0.003333 seed=1" in labels, labels
    assert "optimizer.lr=0.03333 (run0)" in labels and "optimizer.lr=0.03333 (run4)" in labels  # alike: + folder
    assert all(not g["clipped"] and not g["legend_covers"] for g in saved if g["path"].endswith("grid.png"))


def test_a_malformed_run_folder_is_skipped_with_a_warning(tmp_path):
    """Issue 13, case 19: a summary.json that is a list (or not JSON), an overrides.yaml that is no list."""
    write_run(tmp_path / "runs" / "good", ["seed=0"])
    write_run(tmp_path / "runs" / "good2", ["seed=1"], seed=1)
    bad = {"list": ("summary.json", "[1, 2]"), "garbage": ("summary.json", "{not json"),
           "mapping": (".hydra/overrides.yaml", "seed: 1\n")}
    for name, (file, text) in bad.items():
        write_run(tmp_path / "runs" / name, ["seed=2"])
        (tmp_path / "runs" / name / file).write_text(text)
    proc = run_dlrun("report", str(tmp_path / "runs"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    for name, (file, _) in bad.items():
        assert f"warning: skipping {tmp_path / 'runs' / name}: {tmp_path / 'runs' / name / file} is not" in proc.stderr
    jobs = [line.split(",")[0] for line in (tmp_path / "runs" / "report.csv").read_text().splitlines()[1:]]
    assert sorted(jobs) == ["good", "good2"]

"""A run folder, a checkpoint and a config are untrusted input: nothing in them is ever run."""
import json
import pickle
import shutil

import torch

from conftest import assert_clean_error, run_dlrun


class Payload:
    """Unpickling it runs `touch MARKER`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def crafted_run(tmp_path, baseline, marker):
    """The attack of issue 13, case 1: a copied run folder whose saved overrides load an attacker's YAML
    through a group option with `../`, which makes Hydra instantiate torch.load on a code-running pickle."""
    attacker = tmp_path / "attacker"
    (attacker / ".hydra").mkdir(parents=True)
    torch.save(Payload(marker), attacker / "p.pt")
    (attacker / ".hydra" / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    evil:\n"
        f"      _target_: torch.load\n      f: {attacker / 'p.pt'}\n      weights_only: false\n")
    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    up = "../" * len(run.parts)
    return run, attacker, up


def test_a_crafted_run_folder_cannot_run_code_on_resume(tmp_path, baseline):
    marker = tmp_path / "pwned"
    run, attacker, up = crafted_run(tmp_path, baseline, marker)
    saved = run / ".hydra" / "overrides.yaml"
    for option in (f"{up}{str(attacker).lstrip('/')}/.hydra/evil", str(attacker / ".hydra" / "evil"), "nonexistent"):
        saved.write_text(f"- experiment={option}\n")
        proc = run_dlrun(f"resume={run}")
        assert_clean_error(proc, 2, f"cannot resume {run}", "Nothing was run")
        assert not marker.exists(), option
    # the same YAML given on purpose with -cd: Hydra would instantiate its callback, so it is refused too
    (attacker / "experiment").mkdir()
    shutil.copy(attacker / ".hydra" / "evil.yaml", attacker / "experiment" / "evil.yaml")
    proc = run_dlrun("-cd", str(attacker), "experiment=evil", "debug=smoke", f"hydra.run.dir={tmp_path / 'r2'}")
    assert_clean_error(proc, 2, "hydra.callbacks.evil._target_='torch.load'", "never runs code")
    assert not marker.exists() and not (tmp_path / "r2").exists()


def test_a_path_as_a_group_option_is_refused_on_the_command_line(tmp_path):
    (tmp_path / "x.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 1\n")
    proc = run_dlrun(f"experiment=../../../../../../../../{str(tmp_path).lstrip('/')}/x", "debug=smoke",
                     f"hydra.run.dir={tmp_path / 'r'}")
    assert_clean_error(proc, 2, "an option is the name of a file in conf/experiment/", "never a path", "-cd DIR")
    assert not (tmp_path / "r").exists()


def test_experimental_rerun_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "config.pickle").write_bytes(pickle.dumps(Payload(marker)))
    proc = run_dlrun("--experimental-rerun", str(tmp_path / "config.pickle"))
    assert_clean_error(proc, 2, "--experimental-rerun is not supported", "never runs code from a run folder")
    assert not marker.exists()


def test_the_refusal_of_a_crafted_file_never_suggests_loading_it_unsafely(tmp_path, baseline):
    from dlrun.train.checkpoint import _digest

    marker, run = tmp_path / "pwned", tmp_path / "run"
    shutil.copytree(baseline, run)
    last = run / "checkpoints" / "last.pt"
    torch.save({"model": Payload(marker)}, last)
    (run / "checkpoints" / "last.pt.json").write_text(json.dumps({"file": "last.pt", **_digest(last)}))
    weights = tmp_path / "model.weights"
    torch.save(Payload(marker), weights)
    for proc, code in ((run_dlrun(f"resume={run}"), 2),
                       (run_dlrun("model=tv", "model.arch=resnet18", f"model.weights={weights}", "debug=smoke",
                                  f"hydra.run.dir={tmp_path / 'tv'}"), 3)):
        assert_clean_error(proc, code, "cannot be read safely", "not a dlrun checkpoint or a plain tensor file",
                           "was not loaded and nothing in it was run")
        out = proc.stdout + proc.stderr
        for advice in ("weights_only=False", "weights_only` set to `False", "will likely succeed", "safe_globals",
                       "trust"):
            assert advice not in out, out
    assert not marker.exists()


def test_a_text_dataset_reads_only_regular_files_of_bounded_size(tmp_path):
    proc = run_dlrun("model=charlm", "dataset=text", "dataset.path=/dev/zero", "debug=smoke",
                     f"hydra.run.dir={tmp_path / 'z'}", timeout=60)
    assert_clean_error(proc, 2, "dataset.path=/dev/zero is not a regular file")
    big = tmp_path / "big.txt"
    big.write_text("abc " * 300_000)  # 1.2 MB
    proc = run_dlrun("model=charlm", "dataset=text", f"dataset.path={big}", "dataset.max_mb=1", "debug=smoke",
                     f"hydra.run.dir={tmp_path / 'b'}")
    assert_clean_error(proc, 2, "has 1.2 MB, over dataset.max_mb=1")
    assert not (tmp_path / "z").exists() and not (tmp_path / "b").exists()

"""dataset.augment: per-sample random transforms on the device, from the CLI."""
import json

import pytest
import torch

from dlrun.data.augment import Augment, parse_augment
from dlrun.errors import DlrunError
from tests.conftest import run_dlrun


def blob_batch(n=64, size=15):
    """n copies of one bright 3x3 square at the centre (pixel 7, 7) of a dark image."""
    x = torch.zeros(n, 1, size, size)
    x[:, :, 6:9, 6:9] = 1.0
    return x


def centre_of_mass(x):
    h, w = x.shape[-2:]
    ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    m = x.sum(dim=(1, 2, 3))
    return (x.sum(dim=(1, 3)) * ys).sum(1) / m, (x.sum(dim=(1, 2)) * xs).sum(1) / m


def test_parse_accepts_names_amounts_and_dicts_and_rejects_typos():
    assert parse_augment(["rotation:10", "hflip", {"noise": 0.05}]) == {"rotation": 10.0, "hflip": 0.5, "noise": 0.05}
    with pytest.raises(DlrunError, match="unknown augmentation 'rotate'"):
        parse_augment(["rotate:10"])
    with pytest.raises(DlrunError, match="probability"):
        parse_augment(["hflip:2"])
    with pytest.raises(DlrunError, match="images only"):
        Augment({"rotation": 10.0}, (2,))


def test_each_sample_draws_its_own_shift_within_the_bound():
    torch.manual_seed(0)
    x = blob_batch()
    out = Augment({"translation": 0.25}, (1, 15, 15))(x)
    cy, cx = centre_of_mass(out)
    shift = torch.stack([cy - 7, cx - 7])
    assert shift.abs().max() <= 0.25 * 15 + 0.5  # at most a quarter of the image
    assert shift.std(dim=1).min() > 1.0  # samples moved differently, not the batch as one
    assert (out.sum(dim=(1, 2, 3)) - 9).abs().max() < 0.5  # moved, not destroyed


def test_rotation_keeps_a_centred_blob_in_place_and_noise_has_its_std():
    torch.manual_seed(0)
    x = blob_batch()
    rotated = Augment({"rotation": 30.0}, (1, 15, 15))(x)
    cy, cx = centre_of_mass(rotated)
    assert (cy - 7).abs().max() < 0.05 and (cx - 7).abs().max() < 0.05
    assert not torch.allclose(rotated, x)  # the square's corners did turn
    noisy = Augment({"noise": 0.5}, (1, 15, 15))(x)
    assert abs((noisy - x).std().item() - 0.5) < 0.02


def test_hflip_with_probability_one_mirrors_every_image():
    x = torch.rand(8, 3, 5, 7)
    assert torch.equal(Augment({"hflip": 1.0}, (3, 5, 7))(x), x.flip(-1))
    assert torch.equal(Augment({"hflip": 0.0}, (3, 5, 7))(x), x)


def test_augmented_training_from_the_cli_still_learns(tmp_path):
    proc = run_dlrun("dataset.augment=[rotation:10,translation:0.1,noise:0.2]", "trainer.epochs=4",
                     "logger=quiet", f"hydra.run.dir={tmp_path / 'aug'}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "aug" / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.9
    bad = run_dlrun("dataset.augment=[rotate:10]", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "unknown augmentation 'rotate'" in bad.stderr
    assert "Traceback" not in bad.stderr

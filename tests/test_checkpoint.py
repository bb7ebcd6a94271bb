"""Checkpoints: round trip, atomic replacement, and refusing code hidden in a file."""

import pytest
import torch

from dlrun.train.checkpoint import atomic_write, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dlrun.errors import DlrunError
from dlrun.registry import create_model


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(4,), num_outputs=3, hidden=[8])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                     "history": [{"epoch": 1, "val_loss": 0.5}]}, tmp_path / "c.pt")
    expected = torch.rand(3)

    state = load_checkpoint(tmp_path / "c.pt")
    other = create_model("mlp", input_shape=(4,), num_outputs=3, hidden=[8])
    other.load_state_dict(state["model"])
    opt2 = torch.optim.Adam(other.parameters(), lr=0.01)
    opt2.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected)  # the RNG continues exactly where it was saved
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert opt2.state_dict()["state"][0]["step"] == 1
    assert state["history"][0]["val_loss"] == 0.5


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    atomic_write(path, lambda f: f.write(b"old"))

    def crash(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, path)
    with pytest.raises(DlrunError, match="cannot be read safely"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DlrunError, match="last.pt is corrupted: it has 500 bytes"):
        load_checkpoint(path)  # caught by the size recorded at save time
    path.with_name("last.pt.json").unlink()
    with pytest.raises(DlrunError, match="last.pt cannot be read safely"):
        load_checkpoint(path)  # without a record, torch's own reader still refuses it


def test_a_flipped_byte_is_caught_by_the_recorded_sha256(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"w": torch.ones(1000)}, path)
    data = bytearray(path.read_bytes())
    data[-3000] ^= 0xFF  # inside the tensor data: torch.load alone would not notice
    path.write_bytes(bytes(data))
    with pytest.raises(DlrunError, match="sha256 differs"):
        load_checkpoint(path)


def test_a_save_torn_between_the_record_and_the_rename_still_loads(tmp_path, monkeypatch):
    import os

    path = tmp_path / "last.pt"
    save_checkpoint({"w": torch.zeros(3)}, path)
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("last.pt"):
            raise OSError("killed between the record and the rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(DlrunError, match="previous checkpoint is intact"):
        save_checkpoint({"w": torch.ones(3)}, path)
    monkeypatch.undo()
    assert '"replacing"' in (tmp_path / "last.pt.json").read_text()  # the new record names the old file too
    assert torch.equal(load_checkpoint(path)["w"], torch.zeros(3))
    save_checkpoint({"w": torch.ones(3)}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))

"""Missing, truncated and unreadable data, and a DataLoader worker that dies."""
import gzip
import shutil
import struct

import pytest

from conftest import FASHION, assert_clean_error, read_json, read_jsonl, run_dlrun
from dlrun.data.vision import IDX_FILES, check_idx, fashion_mnist
from dlrun.errors import DlrunError
from faults.helpers import TINY, leftovers, load, run_patched

needs_fashion = pytest.mark.skipif(not FASHION.exists(), reason="needs Debian's dataset-fashion-mnist")

# The trainer marks epoch 2 in a file (its workers live across epochs, so they cannot see its memory);
# a worker that serves an item in epoch 2 kills itself.
WORKER_KILLED_IN_EPOCH_2 = """
import os, signal, tempfile, torch.utils.data as tud
from dlrun.train.loop import SupervisedLoop as Trainer
FLAG = os.path.join(tempfile.gettempdir(), f"dlrun-epoch2-{os.getpid()}")
_epoch = Trainer._train_epoch
def train_epoch(self, epoch):
    if epoch == 2:
        open(FLAG, "w").close()
    return _epoch(self, epoch)
Trainer._train_epoch = train_epoch
_get = tud.TensorDataset.__getitem__
def getitem(self, i):
    if tud.get_worker_info() is not None and os.path.exists(FLAG):
        os.remove(FLAG)
        os.kill(os.getpid(), signal.SIGKILL)
    return _get(self, i)
tud.TensorDataset.__getitem__ = getitem
"""


@pytest.mark.slow  # the default suite has tests/test_cli.py's offline MNIST
def test_missing_data_offline_names_the_folder_and_the_files(tmp_path):
    proc = run_dlrun("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false", "debug=smoke")
    assert_clean_error(proc, 3, f"{tmp_path}/MNIST/raw", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.mark.slow
@needs_fashion
def test_a_truncated_idx_gz_file_is_named(tmp_path):
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes((FASHION / gz.name).read_bytes()[:200_000])  # the real file, cut short
    proc = run_dlrun("dataset=fashion_mnist", f"dataset.root={tmp_path}", "debug=smoke")
    assert_clean_error(proc, 3, f"{gz} cannot be unpacked", "truncated")
    assert not leftovers(tmp_path)  # no half-unpacked file left to be mistaken for a good one


def _idx(path, dims, payload=b""):
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload)


@needs_fashion
def test_a_truncated_unpacked_idx_file_is_named(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    labels = raw / "t10k-labels-idx1-ubyte"
    with gzip.open(FASHION / f"{labels.name}.gz") as src, open(labels, "wb") as dst:
        shutil.copyfileobj(src, dst)
    check_idx(labels)  # the real file is whole
    labels.write_bytes(labels.read_bytes()[:5000])
    for name in IDX_FILES:  # the other three: small but valid
        if name != labels.name:
            _idx(raw / name, (2, 28, 28) if "images" in name else (2,), bytes(2 * 784 if "images" in name else 2))
    with pytest.raises(DlrunError, match=r"t10k-labels-idx1-ubyte is corrupted or truncated \(5000 bytes where its "
                                         r"header announces 10008\)"):
        fashion_mnist(root=str(tmp_path), download=False)


@pytest.mark.slow
def test_a_dead_dataloader_worker_is_reported_with_a_hint(tmp_path):
    run = tmp_path / "run"
    proc = run_patched(WORKER_KILLED_IN_EPOCH_2, *TINY, "trainer.epochs=2", "dataset.in_memory=false",
                       "dataset.num_workers=1", f"hydra.run.dir={run}")
    assert_clean_error(proc, 1, "a DataLoader worker died (DataLoader worker (pid", "out-of-memory killer",
                       "dataset.num_workers=0",
                       f"dlrun resume={run}")
    assert load(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]
    assert read_json(run / "summary.json")["status"] == "failed"


@pytest.mark.parametrize("args,fragment", [
    (["dataset.val_split=0"], "1438 training, 0 validation and 359 test samples"),
    (["dataset=synthetic", "dataset.n_samples=5"], "3 training, 2 validation and 0 test samples"),
    (["dataset=synthetic", "dataset.n_samples=1"], "0 test samples"),
])
def test_too_little_data_for_the_splits_says_the_minimum(tmp_path, args, fragment):
    """Case 14: not a ZeroDivisionError or a misleading non-finite loss."""
    proc = run_dlrun(*args, "debug=smoke", f"hydra.run.dir={tmp_path / 'r'}")
    assert_clean_error(proc, 2, fragment, "at least 2 training, 1 validation and 1 test sample(s)")
    assert not (tmp_path / "r").exists()


def test_a_model_too_big_for_the_memory_says_its_size(tmp_path):
    """Case 16: 10 billion weights are refused with their count, not a 40 GB allocation traceback."""
    proc = run_dlrun("model.hidden=[100000,100000]", "debug=smoke", f"hydra.run.dir={tmp_path / 'r'}")
    assert_clean_error(proc, 2, "has 10,007,600,010 parameters (40.0 GB in float32", "does not fit")
    assert not (tmp_path / "r").exists()

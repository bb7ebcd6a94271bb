"""One uninterrupted run that several fault tests compare with or copy (written once for the package)."""
import pytest

from conftest import run_dlrun
from faults.helpers import TINY


@pytest.fixture(scope="package", autouse=True)
def one_thread_per_run():
    """Each dlrun subprocess on one thread: on a busy 2-core machine two spinning OpenMP threads per run
    make these tiny runs several times slower (the results are the same either way)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="package")
def baseline(tmp_path_factory):
    """TINY run to the end, weights also exported as safetensors."""
    run = tmp_path_factory.mktemp("baseline") / "run"
    proc = run_dlrun(*TINY, "trainer.export_safetensors=true", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run

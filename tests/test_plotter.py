"""The confusion-matrix PNG drawn by the helper process: same picture, matplotlib never loaded in the run."""
import subprocess
import sys
import textwrap

from dlrun.plotter import Plotter, draw_confusion
from conftest import read_json, run_dlrun

CM = [[50, 2, 0], [3, 40, 7], [0, 1, 60]]


def test_helper_draws_the_same_png_without_matplotlib_in_this_process(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from dlrun.plotter import Plotter
        p = Plotter.start()
        p.confusion({CM}, ["a", "b", "c"], {str(tmp_path / "helper.png")!r}, "title")
        p.close()
        print("matplotlib" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # drawn by the helper, not here
    draw_confusion(CM, ["a", "b", "c"], str(tmp_path / "here.png"), "title")
    assert (tmp_path / "helper.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_a_dead_helper_is_replaced_by_drawing_here(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], stdin=subprocess.PIPE)
    dead.wait()
    p = Plotter(dead)
    p.confusion(CM, None, tmp_path / "cm.png")
    p.close()
    assert (tmp_path / "cm.png").stat().st_size > 5000


def test_cancel_stops_the_helper_and_close_then_draws_nothing(tmp_path):
    p = Plotter.start()
    proc = p.proc
    p.cancel()
    assert proc.poll() is not None and p.proc is None
    p.close()
    assert list(tmp_path.iterdir()) == []


def test_cli_run_writes_the_confusion_png(tmp_path):
    proc = run_dlrun("logger=quiet", "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr
    cm = read_json(tmp_path / "r" / "summary.json")["confusion_matrix"]
    draw_confusion(cm, None, str(tmp_path / "here.png"), "mlp on digits: test confusion matrix")
    assert (tmp_path / "r" / "confusion_matrix.png").read_bytes() == (tmp_path / "here.png").read_bytes()

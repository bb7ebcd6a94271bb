"""The PNGs dlrun draws: the helper process draws the same picture (matplotlib never loaded in the run), and
every title and label lies whole inside the picture."""
import random
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from dlrun.plotter import Plotter, draw_confusion, draw_images
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


# ---- every text whole, at every class count ------------------------------------------------------------
LONG_TITLE = ("a_model_with_a_long_name on a_dataset_with_an_even_longer_name: test confusion matrix "
              "after many epochs of training with a long recipe")


def clipped_texts(fig) -> list[str]:
    """The texts of `fig` that do not lie wholly inside it, as matplotlib's renderer draws them."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer, inside = fig.canvas.get_renderer(), fig.bbox.padded(1)
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()}
    return [text for text, box in boxes.items()
            if not (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1))]


def legends(fig) -> tuple[list[str], bool]:
    """The labels of `fig`'s legends, and whether a legend covers part of a plot."""
    renderer = fig.canvas.get_renderer()
    found = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    boxes = [legend.get_window_extent(renderer) for legend in found]
    covers = any(box.overlaps(ax.get_window_extent(renderer)) for box in boxes for ax in fig.axes)
    return [t.get_text().replace("\n", " ") for legend in found for t in legend.get_texts()], covers


@pytest.fixture
def saved(monkeypatch) -> list[dict]:
    """Each figure saved during the test: its path, the texts it clips, its legend's labels, whether a legend
    covers a plot, and its size in pixels."""
    from matplotlib.figure import Figure

    figures, real = [], Figure.savefig

    def savefig(fig, path, *args, **kwargs):
        clipped = clipped_texts(fig)
        labels, covers = legends(fig)
        figures.append({"path": str(path), "clipped": clipped, "legend": labels, "legend_covers": covers})
        real(fig, path, *args, **kwargs)
        figures[-1]["size"] = Image.open(path).size

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


@pytest.mark.parametrize("k", [2, 3, 10, 100])
def test_confusion_png_keeps_its_title_and_class_names_whole(tmp_path, saved, k):
    rng = random.Random(k)
    cm = [[rng.randint(0, 500) for _ in range(k)] for _ in range(k)]
    for classes in (None, [f"class {i} with a long descriptive name" for i in range(k)]):
        draw_confusion(cm, classes, str(tmp_path / "cm.png"), LONG_TITLE)
        (fig,) = saved
        assert fig["clipped"] == [], fig["clipped"]
        assert fig["size"][0] >= 500 and fig["size"][1] >= 400, fig["size"]
        saved.clear()


def test_image_grid_png_keeps_its_title_and_row_names_whole(tmp_path, saved):
    image = [[[(i * j) % 7 / 7 for i in range(8)] for j in range(8)]]  # (C=1, H, W)
    draw_images([[image] * 3, [image] * 2], ["real", "reconstructed"], str(tmp_path / "img.png"), LONG_TITLE)
    (fig,) = saved
    assert fig["clipped"] == [] and fig["size"][0] >= 500 and fig["size"][1] >= 400, fig


def test_a_binary_problem_gets_a_whole_confusion_png(tmp_path):
    proc = run_dlrun("dataset=synthetic", "dataset.kind=moons", "debug=smoke", "logger=quiet",
                     f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr
    width, height = Image.open(tmp_path / "r" / "confusion_matrix.png").size
    assert width >= 500 and height >= 400  # was 200 x 180, its title cut to "n synthetic: test confusi"

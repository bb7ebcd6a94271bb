"""Autoencoders rebuild their input: the target is the normalised input taken before augmentation, so with
`dataset.augment=[noise]` the model sees a corrupted input and must return the clean one (denoising)."""
from __future__ import annotations

from dlrun.models.base import can_sample
from dlrun.tasks.base import Artifacts, Task, is_image, register_task
from dlrun.tasks.metrics import regression_metrics


@register_task
class Reconstruction(Task):
    """the input itself, rebuilt (autoencoders; mse, mae)"""

    name, losses, target_is_input = "reconstruction", ("mse", "mae"), True

    def metrics(self, out, y, classes):
        return regression_metrics(out.flatten(1), y.flatten(1)), {}

    def artifacts(self, a: Artifacts, summary: dict, n: int = 8) -> None:
        """reconstructions.png: the first test images, their reconstructions and, for a model that samples (the
        VAE), images decoded from the prior."""
        if not is_image(a.data.input_shape):
            return
        out, target = a.outputs[0]
        rows, labels = [target[:n].cpu().tolist(), out[:n].cpu().tolist()], ["input", "rebuilt"]
        if can_sample(a.model):
            a.model.eval()
            rows.append(a.model.sample(n).float().cpu().tolist())
            labels.append("sampled")
        a.plotter.images(rows, labels, a.run_dir / "reconstructions.png", f"{a.title}: test reconstructions")

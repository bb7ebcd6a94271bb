"""Generated inputs scored against real ones with the maximum mean discrepancy (the GAN): no trained critic needed."""
from __future__ import annotations

from dlrun.tasks.base import Artifacts, Task, is_image, register_task
from dlrun.tasks.losses import MMD


@register_task
class Generation(Task):
    """new inputs, scored against real ones by the MMD (model=gan)"""

    name, losses, target_is_input = "generation", ("mmd",), True

    @classmethod
    def make_loss(cls, name: str, options: dict, num_outputs: int):
        return MMD()

    def metrics(self, out, y, classes):  # a sample of at most 2000 of each: the kernel matrix grows as its square
        return {"mmd": self.loss_fn(out[:2000], y[:2000]).item()}, {}

    def artifacts(self, a: Artifacts, summary: dict, n: int = 8) -> None:
        """samples.png: real test images and generated ones."""
        if is_image(a.data.input_shape):
            out, target = a.outputs[0]
            a.plotter.images([target[:n].cpu().tolist(), out[:n].cpu().tolist()], ["real", "generated"],
                             a.run_dir / "samples.png", f"{a.title}: real and generated")

"""The next token at every step (a character language model): per-token accuracy, perplexity, bits per token;
after the test, text the model writes after a prompt from the test split (samples.txt)."""
from __future__ import annotations

import math

import torch

from dlrun.models.base import can_sample
from dlrun.tasks.base import Artifacts, Task, register_task
from dlrun.tasks.losses import StepCrossEntropy
from dlrun.train.checkpoint import atomic_write


@register_task
class NextToken(Task):
    """the next token at every step (softmax over the vocabulary per step)"""

    name, losses, classification = "next_token", ("cross_entropy",), True

    @classmethod
    def make_loss(cls, name: str, options: dict, num_outputs: int):
        return StepCrossEntropy(label_smoothing=options.get("label_smoothing", 0.0))

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=-1)  # (batch, steps, vocab) -> a token per step

    def decode(self, out, classes, top_k=3):
        """The likeliest next token after each input (its last step), with its probability."""
        probs = out[:, -1].float().softmax(dim=-1)
        p, ids = probs.max(dim=-1)
        return [{"next": classes[i] if classes else i, "probability": q} for i, q in zip(ids.tolist(), p.tolist())]

    def metrics(self, out, y, classes):  # per token: perplexity, and bits (the usual unit for text models)
        ce = torch.nn.functional.cross_entropy(out.flatten(0, 1).double(), y.flatten()).item()
        return {"perplexity": math.exp(ce), "bits_per_token": ce / math.log(2)}, {}

    def artifacts(self, a: Artifacts, summary: dict) -> None:
        """samples.txt: the start of the test text as a prompt, then what the model writes after it."""
        if not can_sample(a.model):
            return
        prompt = a.data.test.x[0][: max(1, min(32, a.data.input_shape[0]))]
        new = a.model.sample(prompt, generator=torch.Generator().manual_seed(a.seed))
        text = "".join(a.data.classes[int(t)] for t in prompt) + "".join(a.data.classes[int(t)] for t in new)
        atomic_write(a.run_dir / "samples.txt", lambda f: f.write(text.encode()), durable=False)
        summary["sample"] = text
        a.say(f"sample (samples.txt): {text}")

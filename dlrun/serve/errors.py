"""What a refused or failed request answers: an HTTP status, a kind (the label of the errors counter in /metrics)
and a one-line message, sent as {"error": MESSAGE}."""
from __future__ import annotations


class ServeError(Exception):
    """A request the server refuses (4xx) or cannot answer now (503); the server itself carries on."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(" ".join(str(message).split()))  # one line, whatever the source wrote
        self.status, self.kind = status, kind

    @property
    def message(self) -> str:
        return str(self)

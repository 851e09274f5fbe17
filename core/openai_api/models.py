"""The models ``/v1`` serves: the server's configured chat, transcription and speech engines, each under its real
name, and OpenAI's usual names as aliases of the transcription and speech models (clients such as Open WebUI send
``whisper-1`` and ``tts-1`` unless told otherwise).

A chat request must name the chat model: a server has one, and a name that is not it is more likely a mistake (a
client configured for another service) than a wish, so it is refused as OpenAI refuses an unknown model: 404, with
the names it would take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.models import EngineInfo
from core.openai_api.errors import InvalidRequest

Stage = Literal["chat", "transcription", "speech"]
ALIASES: dict[Stage, tuple[str, ...]] = {
    "chat": (),
    "transcription": ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"),
    "speech": ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
}


@dataclass(frozen=True, slots=True)
class Model:
    """One model of the list: its id, the stage it serves and the engine behind it."""

    id: str
    stage: Stage
    engine: str

    def to_dict(self, created: int) -> dict[str, object]:
        return {"id": self.id, "object": "model", "created": created, "owned_by": self.engine}


def model_id(info: EngineInfo) -> str:
    """An engine's model as a model id: its model's name; the engine's when it has none, or for the offline voices
    (``piper``, whose "model" is each language's voice)."""
    return info.engine if not info.model or "voices" in info.extra else info.model


class Catalogue:
    """The models of each stage that is running, and the names each one answers to."""

    def __init__(self, engines: dict[Stage, EngineInfo | None], created: int) -> None:
        self.created = created
        self.models = [Model(model_id(info), stage, info.engine) for stage, info in engines.items() if info is not None]

    def listing(self) -> dict[str, object]:
        """``GET /v1/models``: the real models (aliases are names, not models of their own)."""
        return {"object": "list", "data": [model.to_dict(self.created) for model in self.models]}

    def find(self, name: str) -> Model | None:
        """The model ``name`` is, or is an alias of."""
        for model in self.models:
            if name == model.id or name in ALIASES[model.stage]:
                return Model(name, model.stage, model.engine)
        return None

    def describe(self, name: str) -> dict[str, object]:
        """``GET /v1/models/{name}``, or ``not-found``."""
        model = self.find(name)
        if model is None:
            raise InvalidRequest(f"The model '{name}' does not exist", param="model", code="not-found")
        return model.to_dict(self.created)

    def require(self, name: str, stage: Stage) -> Model:
        """The model a request of ``stage`` names, or ``not-found`` listing the names that stage takes."""
        model = self.find(name)
        if model is not None and model.stage == stage:
            return model
        served = [m.id for m in self.models if m.stage == stage]
        if not served:
            raise InvalidRequest(f"this server has no {stage} model", param="model", code="not-found")
        names = ", ".join([*served, *ALIASES[stage]])
        raise InvalidRequest(
            f"The model '{name}' does not exist for {stage} here; use one of: {names}",
            param="model",
            code="not-found",
        )

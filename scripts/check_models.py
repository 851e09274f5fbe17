"""Checks an install works offline: each bundled model resolves from its package and each native library loads.

The Docker build runs it (so an image missing a model or a system library fails to build), and so does
tests/test_deploy.py on the development virtualenv.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NATIVE = ("av", "ctranslate2", "faster_whisper", "llama_cpp", "onnxruntime", "piper", "numpy")


def main() -> int:
    from core.llm.local_llama import bundled_gguf
    from core.stt.whisper import base_sources
    from core.tts.piper import resolve_voice
    from core.voice.smart_turn import default_model_path
    from core.voice.vad import bundled_model_path

    for name in NATIVE:
        importlib.import_module(name)
    models = {
        "llm": bundled_gguf(),
        "stt": base_sources()[0][0].parent,  # every file of the base model; joined on the server's first start
        "tts": resolve_voice("")[0],
        "vad": bundled_model_path(),
        "turn": default_model_path(),  # put there by make install (scripts/fetch_smart_turn.py)
    }
    for stage, path in models.items():
        if not Path(path).exists():
            print(f"check_models: the {stage} model is missing at {path}", file=sys.stderr)
            return 1
        print(f"{stage}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

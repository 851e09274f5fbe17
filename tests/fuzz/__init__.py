"""Fuzzing: hypothesis profiles, shared strategies, a bounded worker process and the atheris harnesses.

Two hypothesis profiles, chosen by the ``FUZZ`` environment variable (read once, when the fuzz tests are collected):

- ``web-bot-short`` (the default, in ``make test``): few examples, derandomized, so the suite's run is the same
  every time and cannot fail on a new random find; no example database written into the tree.
- ``web-bot-fuzz`` (``FUZZ=long``, as ``make fuzz`` sets it): many random examples each run, failures kept in
  ``test-artifacts/fuzz/hypothesis/`` and replayed first next time.

Neither has a deadline: a busy 2-core machine makes per-example timing noise, and hangs are caught by the
worker's own bound (``tests.fuzz.bounded``), generous enough that only a real hang trips it.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

SHORT = "web-bot-short"
LONG = "web-bot-fuzz"

_COMMON = {
    "deadline": None,
    # Examples go through a worker process or write a file; a slow machine must not fail the health check.
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
# No shrinking in the short run: a failure is reported at once, as found (make fuzz shrinks it).
_UNSHRUNK = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)
settings.register_profile(SHORT, max_examples=60, derandomize=True, database=None, phases=_UNSHRUNK, **_COMMON)
# test-artifacts/ is ignored by git: found failures stay on this machine, replayed first by the next run.
_FOUND = DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[2] / "test-artifacts" / "fuzz" / "hypothesis")
settings.register_profile(LONG, max_examples=2500, database=_FOUND, **_COMMON)


def profile() -> settings:
    """The profile for this run: ``FUZZ=long`` selects the long one."""
    return settings.get_profile(LONG if os.environ.get("FUZZ") == "long" else SHORT)


def examples(short: int) -> settings:
    """The run's profile with ``short`` examples in the short run, and 25 times as many in the long one."""
    base = profile()
    return settings(base, max_examples=short * 25 if base is settings.get_profile(LONG) else short)

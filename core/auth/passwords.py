"""Password hashing with argon2id (argon2-cffi, RFC 9106's low-memory parameters), off the event loop.

Each hash costs ~64 MiB and tens of milliseconds of CPU, so hashing runs in worker threads, at most
``max_concurrent`` at once: a burst of sign-ins queues instead of stalling every other client or exhausting memory.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """``hash`` and ``verify`` passwords as argon2id PHC strings."""

    def __init__(self, *, max_concurrent: int = 2) -> None:
        self._hasher = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4 (RFC 9106, second recommendation)
        self._slots = asyncio.Semaphore(max_concurrent)
        # Verified when the username is unknown, so that answer takes as long as a wrong password.
        self._decoy = self._hasher.hash("not a password of anyone's")

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        """Whether ``password`` matches ``hashed``; None (no such user, or no password) checks a decoy and fails."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, hashed, password)

    def needs_rehash(self, hashed: str) -> bool:
        """Whether ``hashed`` was made with weaker parameters than today's (rehash it at the next sign-in)."""
        return self._hasher.check_needs_rehash(hashed)

    def _verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(hashed or self._decoy, password) and hashed is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

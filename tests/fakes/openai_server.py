"""A loopback OpenAI-compatible server: chat completions (streamed and not), and injected failures.

The last user message steers it, so it works across processes (the benchmark) as well as in tests:
``[status:429]`` answers with that HTTP status, ``[hang]`` never answers, ``[slow:0.2]`` waits that many
seconds between chunks, ``[reply:…]`` answers with that text, ``[context]`` is OpenAI's 400 for a prompt longer than
the model's context. Otherwise it echoes the message and says how
many messages it was sent, so tests can check the context.

Faults (``FAULT``), for chat by directive and for every endpoint by ``FakeOpenAI.fault`` (per instance, e.g.
``fake.fault["speech"] = "[garbage]"``): ``[first:2.5]`` waits that long before the first byte, ``[cut:2]`` breaks
the connection after that many chunks (mid-body for the audio endpoints), ``[stall:2]`` stops sending after that
many chunks and keeps the connection open, ``[garbage]`` answers 200 with bytes that are no JSON (chat: an event
stream of them), ``[html]`` answers 200 with an HTML page. A refused connection is a stopped server
(``ThreadedServer.stop``), or ``closed_port()``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DIRECTIVE = re.compile(r"\[(status|hang|slow|reply|chunks|first|cut|stall|garbage|html|context):?([^\]]*)\]")
FAULTS = ("first", "cut", "stall", "garbage", "html")
HTML = b"<!doctype html><html><body><h1>502 Bad Gateway</h1></body></html>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting to it is refused."""
    return free_port()


# OpenAI's answer to a prompt longer than the model's context.
CONTEXT_EXCEEDED = {
    "message": "This model's maximum context length is 128 tokens. However, your messages resulted in 4242 tokens.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}


def default_reply(messages: list[dict[str, Any]]) -> str:
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"You said: {last}. (context {len(messages)} messages)"


class FakeOpenAI:
    """State of the fake: what it was asked, and how it answers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.chunk_words = 3
        # Audio endpoints: what a transcription returns, and HTTP statuses to fail the next calls with.
        self.transcript = "hello from the fake transcriber"
        self.transcription_failures: list[int] = []
        self.transcription_delay_s = 0.0
        self.transcriptions_received: list[dict[str, Any]] = []
        self.speech_requests: list[dict[str, Any]] = []
        self.speech_failures: list[int] = []
        # Replies that directives cannot spell (markdown has brackets): a user message containing a key is
        # answered with its value.
        self.scripted: dict[str, str] = {}
        # Replies streamed as exactly these chunks (e.g. an emoji's surrogate halves in two chunks, as a proxy that
        # slices by UTF-16 code units sends them); JSON escapes each lone half as \udXXX.
        self.scripted_chunks: dict[str, list[str]] = {}
        # Replies chosen by the system prompt (e.g. "Always answer in Russian." -> a Russian reply), as a model that
        # follows its instructions would answer.
        self.by_system: dict[str, str] = {}
        # Faults for every request of an endpoint ("chat", "transcriptions", "speech"), spelled as the directives.
        self.fault: dict[str, str] = {}
        self.started: dict[str, int] = {"chat": 0, "transcriptions": 0, "speech": 0}  # requests begun, faulty or not

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def transcriptions(self, request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        data = await upload.read() if upload is not None and not isinstance(upload, str) else b""
        self.transcriptions_received.append(
            {
                "model": form.get("model"),
                "language": form.get("language"),
                "bytes": len(data),
                "filename": getattr(upload, "filename", None),
                "response_format": form.get("response_format"),
            }
        )
        await form.close()  # an upload over 1 MB was spooled to a temporary file
        self.auth_headers.append(request.headers.get("authorization", ""))
        self.started["transcriptions"] += 1
        faulty = await _fault(dict(DIRECTIVE.findall(self.fault.get("transcriptions", ""))), lambda: b'{"text": "abc')
        if faulty is not None:
            return faulty
        if self.transcription_delay_s:
            await asyncio.sleep(self.transcription_delay_s)
        if self.transcription_failures:
            code = self.transcription_failures.pop(0)
            return JSONResponse({"error": {"message": f"injected {code}", "type": "fake"}}, code)
        if form.get("response_format") == "text":
            return Response(self.transcript, media_type="text/plain")
        return JSONResponse({"text": self.transcript})

    async def speech(self, request: Request) -> Response:
        """Answers with a tone as long as the text would take to say (about 60 ms a character)."""
        body = await request.json()
        self.speech_requests.append(body)
        self.auth_headers.append(request.headers.get("authorization", ""))
        directives = dict(DIRECTIVE.findall(body.get("input", "") + self.fault.get("speech", "")))
        self.started["speech"] += 1
        faulty = await _fault(directives, lambda: tone(1.0, "wav")[0])
        if faulty is not None:
            return faulty
        if "status" in directives:
            code = int(directives["status"])
            return JSONResponse({"error": {"message": f"injected {code}", "type": "fake"}}, code)
        if "hang" in directives:
            await asyncio.sleep(3600)
        if self.speech_failures:
            code = self.speech_failures.pop(0)
            return JSONResponse({"error": {"message": f"injected {code}", "type": "fake"}}, code)
        fmt = body.get("response_format", "mp3")
        audio, media = tone(len(body.get("input", "")) * 0.06, fmt)
        return Response(audio, media_type=media)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.auth_headers.append(request.headers.get("authorization", ""))
        messages = body["messages"]
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        directives = dict(DIRECTIVE.findall(last + self.fault.get("chat", "")))
        self.started["chat"] += 1
        if "first" in directives:
            await asyncio.sleep(float(directives["first"]))
        if "html" in directives:
            return Response(HTML, media_type="text/html")
        if "garbage" in directives and body.get("stream"):
            return StreamingResponse(_garbage_events(), media_type="text/event-stream")
        if "status" in directives:
            code = int(directives["status"])
            return JSONResponse({"error": {"message": f"injected {code}", "type": "fake", "code": code}}, code)
        if "context" in directives:
            return JSONResponse({"error": CONTEXT_EXCEEDED}, 400)
        if "hang" in directives:
            await asyncio.sleep(3600)
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        scripted = next((text for key, text in self.scripted.items() if key in last), None)
        scripted = scripted or next((text for key, text in self.by_system.items() if key in system), None)
        reply = directives.get("reply") or scripted or default_reply(messages)
        delay = float(directives.get("slow") or 0)
        words = reply.split(" ")
        size = int(directives.get("chunks") or self.chunk_words)
        chunks = [
            " ".join(words[i : i + size]) + (" " if i + size < len(words) else "") for i in range(0, len(words), size)
        ]
        exact = next((parts for key, parts in self.scripted_chunks.items() if key in last), None)
        if exact is not None:
            chunks = list(exact)
        if not body.get("stream"):
            return JSONResponse(_completion(body, reply))
        if "cut" in directives or "stall" in directives:
            mode = "cut" if "cut" in directives else "stall"
            after = int(directives[mode] or 1)
            broken = _broken(_sse(body, chunks, delay), after + 1, mode)
            return StreamingResponse(broken, media_type="text/event-stream")
        return StreamingResponse(_sse(body, chunks, delay), media_type="text/event-stream")


async def _fault(directives: dict[str, str], make_body: Callable[[], bytes]) -> Response | None:
    """The faulty answer ``directives`` ask for (``FAULTS``), ``body`` being what a cut one starts to send; None
    for none. A slow first byte is waited here and the request then goes on as usual."""
    if "first" in directives:
        await asyncio.sleep(float(directives["first"]))
    if "hang" in directives:
        await asyncio.sleep(3600)
    if "html" in directives:
        return Response(HTML, media_type="text/html")
    if "garbage" in directives:
        return Response(b"\x00\xffnot json at all\x01" * 8, media_type="application/json")
    if "cut" in directives or "stall" in directives:
        mode = "cut" if "cut" in directives else "stall"
        body = make_body()
        pieces = [body[: len(body) // 3], body[len(body) // 3 :]]
        stream = _broken(_pieces(pieces), 1, mode)
        return StreamingResponse(stream, headers={"content-length": str(len(body))}, media_type="application/json")
    return None


async def _pieces(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _broken(stream: AsyncIterator[bytes], after: int, mode: str) -> AsyncIterator[bytes]:
    """``stream``'s first ``after`` pieces, then a broken connection (``cut``) or silence (``stall``)."""
    sent = 0
    async for piece in stream:
        if sent == after:
            if mode == "stall":
                await asyncio.sleep(3600)
            raise ConnectionResetError("the fake cuts the stream here")
        yield piece
        sent += 1


async def _garbage_events() -> AsyncIterator[bytes]:
    yield b"data: {\"choices\": [{\"delta\": {\"content\": \"Hel"
    yield b"\n\ndata: this is not json\n\n"
    yield b"data: [DONE]\n\n"


def tone(seconds: float, fmt: str, rate: int = 24000) -> tuple[bytes, str]:
    """A 440 Hz tone encoded as ``fmt`` (pcm, wav, mp3, opus, flac, aac), and its media type."""
    import math
    import struct

    from core.audio import pcm_to_wav
    from tests.speech import encode_as

    count = max(1, int(seconds * rate))
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(count))
    if fmt == "pcm":
        return pcm, "audio/pcm"
    if fmt == "wav":
        return pcm_to_wav(pcm, rate), "audio/wav"
    container, codec, media = {
        "mp3": ("mp3", "mp3", "audio/mpeg"),
        "opus": ("ogg", "libopus", "audio/ogg"),
        "flac": ("flac", "flac", "audio/flac"),
        "aac": ("adts", "aac", "audio/aac"),
    }[fmt]
    return encode_as(pcm, rate, container, codec, out_rate=48000 if codec == "libopus" else rate), media


def _completion(body: dict[str, Any], reply: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake-model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


async def _sse(body: dict[str, Any], chunks: list[str], delay: float) -> AsyncIterator[bytes]:
    base = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "fake-model"),
    }
    first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    yield f"data: {json.dumps(first)}\n\n".encode()
    for chunk in chunks:
        if delay:
            await asyncio.sleep(delay)
        data = {**base, "choices": [{"index": 0, "delta": {"content": chunk}, "finish_reason": None}]}
        yield f"data: {json.dumps(data)}\n\n".encode()
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()


class ThreadedServer:
    """Runs an ASGI app on real uvicorn, on 127.0.0.1 and an OS-chosen port, in a background thread."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                lifespan="on",
                timeout_graceful_shutdown=2,
                **config,
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self, timeout: float = 120) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("server failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def main() -> None:
    """Serve the fake from the command line: ``python -m tests.fakes.openai_server PORT``."""
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    uvicorn.run(FakeOpenAI().app(), host="127.0.0.1", port=port or free_port(), log_level="warning")


if __name__ == "__main__":
    main()

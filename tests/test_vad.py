"""Server-side voice activity detection on Piper-spoken sentences, noise and clicks, fed in 20 ms chunks."""

from __future__ import annotations

import numpy as np
import pytest

from core.voice.vad import SileroModel, SpeechEnd, SpeechStart, VADEvent, VoiceActivityDetector
from tests.speech import SENTENCES, noise, resample, silence, speak

CHUNK = 640  # 20 ms of 16 kHz PCM16, as browsers send it


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel()


def spoken(text: str) -> bytes:
    pcm, rate = speak(text)
    return resample(pcm, rate, 16000)


def voiced_span_ms(pcm: bytes, offset_bytes: int) -> tuple[float, float]:
    """First and last clearly audible sample of ``pcm``, in ms of the stream it starts ``offset_bytes`` into."""
    loud = np.nonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > 500)[0]
    base = offset_bytes / 32
    return base + loud[0] / 16, base + loud[-1] / 16


def run(detector: VoiceActivityDetector, audio: bytes, chunk: int = CHUNK) -> list[tuple[float, VADEvent]]:
    """Every event, with the stream position (ms) at which ``feed`` returned it."""
    events: list[tuple[float, VADEvent]] = []
    for offset in range(0, len(audio), chunk):
        piece = audio[offset : offset + chunk]
        events += [((offset + len(piece)) / 32, event) for event in detector.feed(piece)]
    return events


def pink_noise(seconds: float, level: float = 0.1, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    count = int(seconds * 16000)
    spectrum = np.fft.rfft(rng.normal(size=count))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    samples = np.fft.irfft(spectrum, count)
    scaled = (samples / samples.std() * level * 32767).clip(-32768, 32767).astype("<i2")
    return bytes(scaled.tobytes())


def clicks(seconds: float, seed: int = 5) -> bytes:
    """Keyboard-like clicks: short decaying bursts 80-300 ms apart."""
    rng = np.random.default_rng(seed)
    samples = np.zeros(int(seconds * 16000))
    at = 0.05
    while at < seconds - 0.02:
        start = int(at * 16000)
        samples[start : start + 200] += rng.normal(0, 0.5 * 32767, 200) * np.exp(-np.arange(200) / 30)
        at += rng.uniform(0.08, 0.3)
    return samples.clip(-32768, 32767).astype("<i2").tobytes()


@pytest.mark.slow
def test_one_utterance_per_sentence(model: SileroModel) -> None:
    detector = VoiceActivityDetector(model, silence_ms=500, prefix_padding_ms=300)
    audio = bytearray(silence(0.6))
    spans = []
    for text in SENTENCES[:3]:
        pcm = spoken(text)
        spans.append(voiced_span_ms(pcm, len(audio)))
        audio += pcm + silence(1.2)
    events = run(detector, bytes(audio))

    kinds = [type(event).__name__ for _, event in events]
    assert kinds == ["SpeechStart", "SpeechEnd"] * 3
    for (first, last), (start_at, start), (end_at, end) in zip(spans, events[0::2], events[1::2], strict=True):
        assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
        assert end.reason == "silence"
        assert first - 150 <= start.at_ms <= first + 250  # Silero hears the onset within a few windows
        assert start_at - start.at_ms >= 250  # it waited for min_speech_ms of speech before saying so
        utterance_from = end.start_ms - 300
        assert utterance_from <= first and utterance_from + end.duration_s * 1000 >= last
        assert (last - first) / 1000 < end.duration_s < (last - first) / 1000 + 0.9
        assert 500 <= end_at - last <= 700  # end of speech is announced silence_ms (+ a window or two) later


@pytest.mark.slow
def test_speech_over_quiet_noise_is_still_found(model: SileroModel) -> None:
    speech = silence(0.5) + spoken(SENTENCES[1]) + silence(1.0)
    mixed = (np.frombuffer(speech, "<i2") + np.frombuffer(noise(len(speech) / 32000, level=0.01), "<i2")).astype("<i2")
    events = [event for _, event in run(VoiceActivityDetector(model), mixed.tobytes())]
    assert [type(event) for event in events] == [SpeechStart, SpeechEnd]


@pytest.mark.parametrize(
    "audio",
    [
        noise(6, level=0.02),
        noise(6, level=0.1),
        noise(6, level=0.3),
        pink_noise(6),
        pink_noise(6, level=0.3),
        clicks(6),
    ],
    ids=["white-quiet", "white", "white-loud", "pink", "pink-loud", "clicks"],
)
def test_noise_alone_is_never_an_utterance(model: SileroModel, audio: bytes) -> None:
    detector = VoiceActivityDetector(model)
    assert run(detector, audio) == []
    assert detector.flush() is None


@pytest.mark.slow
def test_a_blip_shorter_than_min_speech_is_ignored(model: SileroModel) -> None:
    pcm = spoken(SENTENCES[0])
    middle = len(pcm) // 2 // 2 * 2
    blip = pcm[middle : middle + 150 * 32]  # 150 ms of clear speech
    detector = VoiceActivityDetector(model, min_speech_ms=250)
    assert run(detector, silence(0.5) + blip + silence(1.0)) == []
    assert not detector.speaking
    assert detector.flush() is None
    # The same audio is a turn when blips are welcome.
    assert [
        type(e) for _, e in run(VoiceActivityDetector(model, min_speech_ms=60), silence(0.5) + blip + silence(1.0))
    ] == [
        SpeechStart,
        SpeechEnd,
    ]


@pytest.mark.slow
def test_max_utterance_forces_an_end(model: SileroModel) -> None:
    speech = b"".join(spoken(text) for text in SENTENCES)  # ~12 s without a pause
    detector = VoiceActivityDetector(model, max_utterance_s=3.0)
    events = [event for _, event in run(detector, silence(0.5) + speech + silence(1.0))]
    ends = [event for event in events if isinstance(event, SpeechEnd)]
    assert ends[0].reason == "max-length" and ends[0].duration_s == pytest.approx(3.0, abs=0.05)
    assert ends[-1].reason == "silence"
    assert all(end.duration_s <= 3.05 for end in ends)
    assert sum(end.duration_s for end in ends) >= len(speech) / 32000 - 0.5  # nothing lost between the cuts
    assert isinstance(events[0], SpeechStart) and len(events) == 2 * len(ends)


@pytest.mark.slow
def test_flush_ends_a_push_to_talk_utterance(model: SileroModel) -> None:
    pcm = spoken(SENTENCES[2])
    detector = VoiceActivityDetector(model)
    events = run(detector, silence(0.4) + pcm + silence(0.1))
    assert [type(e) for _, e in events] == [SpeechStart]
    assert detector.speaking
    end = detector.flush()
    assert end is not None and end.reason == "flush"
    assert len(pcm) / 32000 < end.duration_s < len(pcm) / 32000 + 0.5
    assert not detector.speaking and detector.position_ms == 0
    assert detector.flush() is None


@pytest.mark.slow
def test_events_do_not_depend_on_chunk_sizes(model: SileroModel) -> None:
    audio = silence(0.3) + spoken(SENTENCES[3]) + silence(0.8)
    expected = [event for _, event in run(VoiceActivityDetector(model), audio)]
    assert [type(e) for e in expected] == [SpeechStart, SpeechEnd]
    for size in (7, 333, 1024, 4000):
        assert [event for _, event in run(VoiceActivityDetector(model), audio, size)] == expected


@pytest.mark.slow
def test_reset_forgets_speech_in_progress(model: SileroModel) -> None:
    detector = VoiceActivityDetector(model)
    run(detector, silence(0.3) + spoken(SENTENCES[4]))
    assert detector.speaking
    detector.reset()
    assert not detector.speaking and detector.position_ms == 0
    assert run(detector, silence(1.0)) == []

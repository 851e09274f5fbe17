"""Audio decoding: every accepted container and WAV layout, recognised from content; damaged, foreign, long files."""

from __future__ import annotations

import io
import random
import time
import wave

import av
import numpy as np
import pytest

from core.audio import TARGET_RATE, clip_from_pcm16, decode_audio, pcm_to_wav, sniff_container
from core.errors import AudioError
from core.models import AudioClip
from tests import speech

# every container name tests.speech can encode -> what sniff_container must call it
KINDS = {
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "aiff": "aiff",
    "m4a": "mp4",
    "ogg-opus": "ogg",
    "webm-opus": "webm",
    "wav-float32": "wav",
    "wav-float64-stereo": "wav",
    "aac-adts": "adts",
    "m4a-48k": "mp4",
    "mp3-stereo-44k": "mp3",
    "ogg-vorbis": "ogg",
    "webm-mediarecorder": "webm",
}
LOSSLESS = {"wav", "flac", "aiff", "wav-float32", "wav-float64-stereo"}
RECORDINGS = ["one-two-three.wav", "mono-16bit-44k.aiff", "stereo-24bit-44k.flac"]


@pytest.fixture(scope="module")
def sentence() -> tuple[bytes, int]:
    return speech.speak_steady(speech.SENTENCES[0])


def decode(data: bytes, limit: float = 60.0) -> AudioClip:
    return decode_audio(data, max_duration_s=limit)


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def similarity(decoded: bytes, reference: bytes) -> float:
    """Peak normalised cross-correlation over small lags (codecs delay the signal by their priming samples)."""
    a, b = samples(decoded), samples(reference)
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    return float(np.max(corr[:2048]) / (np.linalg.norm(a) * np.linalg.norm(b)))


def rms(pcm: bytes) -> float:
    return float(np.sqrt(np.mean(samples(pcm) ** 2)))


@pytest.mark.parametrize("rate", [22050, 48000])
@pytest.mark.parametrize("container", sorted(KINDS))
def test_every_container_decodes_to_its_duration(container: str, rate: int, sentence: tuple[bytes, int]) -> None:
    pcm = speech.resample(*sentence, rate)
    data = speech.encode(pcm, rate, container)
    assert sniff_container(data) == KINDS[container]
    clip = decode(data)
    assert clip.sample_rate == TARGET_RATE
    expected = len(pcm) / 2 / rate
    # AAC starts with 1024 priming samples and pads its last frame; at 22.05 kHz that is up to 93 ms more.
    tolerance = 2048 / 22050 if "m4a" in container or "aac" in container else 0.05
    assert clip.duration_s == pytest.approx(expected, abs=max(tolerance, 0.05))
    reference = speech.resample(pcm, rate, TARGET_RATE)
    assert rms(clip.pcm) == pytest.approx(rms(reference), rel=0.2)  # stereo is mixed down, not summed
    if container in LOSSLESS:
        assert similarity(clip.pcm, reference) > 0.98  # the reference is linearly interpolated, FFmpeg's is not


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("bits", [8, 16, 24, 32])
def test_every_wav_layout_decodes_to_the_same_signal(bits: int, channels: int, sentence: tuple[bytes, int]) -> None:
    pcm, rate = sentence
    clip = decode(speech.wav(pcm, rate, bits=bits, channels=channels))
    reference = decode(speech.wav(pcm, rate)).pcm  # 16-bit mono, through the same resampler
    assert clip.duration_s == pytest.approx(len(pcm) / 2 / rate, abs=0.005)
    assert similarity(clip.pcm, reference) > (0.98 if bits == 8 else 0.9999)
    assert rms(clip.pcm) == pytest.approx(rms(reference), rel=0.02)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 32000, 44100, 96000])
def test_wav_at_any_rate_is_resampled_to_16k(rate: int, sentence: tuple[bytes, int]) -> None:
    pcm = speech.resample(*sentence, rate)
    clip = decode(speech.wav(pcm, rate))
    assert clip.sample_rate == 16000
    assert clip.duration_s == pytest.approx(len(pcm) / 2 / rate, abs=0.005)


def test_pcm16_at_16k_round_trips_exactly(sentence: tuple[bytes, int]) -> None:
    pcm = speech.resample(*sentence, 16000)
    assert decode(pcm_to_wav(pcm, 16000)).pcm == pcm


def test_real_recordings_in_three_layouts_decode_alike() -> None:
    with wave.open(str(speech.SHARED_AUDIO / "one-two-three.wav")) as header:
        expected = header.getnframes() / header.getframerate()
    clips = {name: decode((speech.SHARED_AUDIO / name).read_bytes()) for name in RECORDINGS}
    for clip in clips.values():
        assert clip.duration_s == pytest.approx(expected, abs=0.05)
    mono = clips["one-two-three.wav"].pcm
    assert similarity(clips["mono-16bit-44k.aiff"].pcm, mono) > 0.99
    assert similarity(clips["stereo-24bit-44k.flac"].pcm, mono) > 0.99


def test_french_recording_decodes_to_its_declared_duration() -> None:
    data = (speech.SHARED_AUDIO / "french.aiff").read_bytes()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        expected = stream.frames / stream.sample_rate
    assert decode(data).duration_s == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is a text file that someone named recording.wav\n" * 40,
        bytes(range(256)) * 40,
        b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(500),
        b"\xff\xfb" + bytes(100),  # one stray MPEG sync word is not an MP3
    ],
    ids=["zero-bytes", "text", "binary", "avi-header", "stray-sync"],
)
def test_what_is_not_audio_is_unsupported(data: bytes) -> None:
    assert sniff_container(data) is None
    with pytest.raises(AudioError) as err:
        decode(data)
    assert err.value.code == "unsupported-audio"


def test_a_video_without_sound_is_unsupported() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(AudioError) as err:
        decode(buf.getvalue())
    assert err.value.code == "unsupported-audio"


@pytest.mark.parametrize("cut", ["two-thirds", "seven-bytes"])
@pytest.mark.parametrize("container", sorted(KINDS))
def test_truncated_files_are_corrupt(container: str, cut: str, sentence: tuple[bytes, int]) -> None:
    data = speech.encode(*sentence, container)
    truncated = data[: len(data) * 2 // 3] if cut == "two-thirds" else data[:-7]
    with pytest.raises(AudioError) as err:
        decode(truncated)
    assert err.value.code == "corrupt-audio"


def packet_offsets(data: bytes) -> list[int]:
    with av.open(io.BytesIO(data)) as container:
        return [p.pos for p in container.demux(container.streams.audio[0]) if p.pos is not None and p.pos >= 0]


@pytest.mark.parametrize("container", ["mp3", "flac", "wav", "aiff", "m4a"])
def test_files_cut_exactly_between_frames_are_corrupt(container: str, sentence: tuple[bytes, int]) -> None:
    """No partial frame to trip over: what the headers declare (Xing, STREAMINFO, chunk and box sizes) gives it
    away. Raw ADTS, and Ogg or live WebM cut between pages or blocks, declare nothing: such a cut reads as a
    shorter recording."""
    data = speech.encode(*sentence, container)
    offsets = packet_offsets(data)
    cut = offsets[len(offsets) // 2]
    with pytest.raises(AudioError) as err:
        decode(data[:cut])
    assert err.value.code == "corrupt-audio"


def test_a_codec_without_a_decoder_is_unsupported() -> None:
    data = bytearray(pcm_to_wav(speech.silence(0.5), 16000))
    data[20:22] = (0x1234).to_bytes(2, "little")  # a WAVE format tag nobody has registered
    with pytest.raises(AudioError) as err:
        decode(bytes(data))
    assert err.value.code == "unsupported-audio"


def test_mangled_files_only_ever_raise_audio_errors(sentence: tuple[bytes, int]) -> None:
    """Bytes flipped, overwritten, cut anywhere: the header walks must never index past the end or crash."""
    rng = random.Random(7)
    originals = {name: speech.encode(*sentence, name) for name in KINDS}
    codes: set[str] = set()
    for _ in range(200):
        name = rng.choice(sorted(originals))
        data = bytearray(originals[name])
        where = rng.randrange(len(data))
        choice = rng.randrange(3)
        if choice == 0:
            data[where] = rng.randrange(256)
        elif choice == 1:
            data[where : where + 200] = rng.randbytes(rng.randrange(1, 200))
        else:
            del data[where:]
        try:
            decode(bytes(data))
        except AudioError as err:
            codes.add(err.code)
    assert codes <= {"corrupt-audio", "unsupported-audio"} and "corrupt-audio" in codes


def test_a_wav_header_without_samples_is_corrupt() -> None:
    with pytest.raises(AudioError) as err:
        decode(pcm_to_wav(b"", 16000))
    assert err.value.code == "corrupt-audio"


def test_streamed_wav_with_unknown_sizes_decodes(sentence: tuple[bytes, int]) -> None:
    data = bytearray(speech.wav(*sentence))
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"  # what a writer leaves when it cannot seek back
    assert decode(bytes(data)).duration_s == pytest.approx(len(sentence[0]) / 2 / sentence[1], abs=0.005)


@pytest.mark.parametrize("container", ["flac", "mp3", "ogg-opus", "webm-opus"])
def test_files_damaged_in_the_middle_are_corrupt(container: str) -> None:
    """Checksums (FLAC frames, Ogg pages) and declared durations catch what decoders would otherwise paper over.
    AAC in MP4 carries no checksum: damage inside a frame decodes to noise, undetected."""
    data = bytearray(speech.encode(speech.noise(3.0, level=0.05), 16000, container))  # deterministic, unlike Piper
    middle = len(data) // 2
    data[middle : middle + 256] = bytes(256)
    with pytest.raises(AudioError) as err:
        decode(bytes(data))
    assert err.value.code == "corrupt-audio"


@pytest.mark.parametrize("container", ["wav", "mp3", "ogg-opus", "webm-mediarecorder", "flac", "m4a"])
def test_audio_over_the_limit_is_too_long(container: str, sentence: tuple[bytes, int]) -> None:
    pcm, rate = sentence
    with pytest.raises(AudioError) as err:
        decode(speech.encode(pcm, rate, container), limit=len(pcm) / 2 / rate - 0.5)
    assert err.value.code == "audio-too-long"


def test_decoding_stops_once_the_limit_is_passed(sentence: tuple[bytes, int]) -> None:
    pcm, rate = sentence
    data = speech.encode(pcm * 20, rate, "webm-mediarecorder")  # ~60 s with no declared duration anywhere
    started = time.perf_counter()
    full = decode(data).duration_s
    full_s = time.perf_counter() - started
    started = time.perf_counter()
    with pytest.raises(AudioError) as err:
        decode(data, limit=2.0)
    assert err.value.code == "audio-too-long"
    assert full > 50 and time.perf_counter() - started < full_s / 4


def test_clip_from_pcm16_resamples_to_16k(sentence: tuple[bytes, int]) -> None:
    pcm = speech.resample(*sentence, 48000)
    clip = clip_from_pcm16(pcm, 48000)
    assert clip.sample_rate == 16000
    assert clip.duration_s == pytest.approx(len(pcm) / 2 / 48000, abs=0.002)
    assert similarity(clip.pcm, speech.resample(pcm, 48000, 16000)) > 0.98
    same = speech.resample(*sentence, 16000)
    assert clip_from_pcm16(same, 16000).pcm == same


@pytest.mark.parametrize(
    ("pcm", "rate", "code"), [(b"\x00\x01\x02", 16000, "corrupt-audio"), (b"\x00\x00", 0, "unsupported-audio")]
)
def test_clip_from_pcm16_rejects_bad_input(pcm: bytes, rate: int, code: str) -> None:
    with pytest.raises(AudioError) as err:
        clip_from_pcm16(pcm, rate)
    assert err.value.code == code


def test_pcm_to_wav_is_a_standard_wav() -> None:
    pcm = speech.noise(0.5)
    with wave.open(io.BytesIO(pcm_to_wav(pcm, 16000))) as read:
        assert (read.getnchannels(), read.getsampwidth(), read.getframerate()) == (1, 2, 16000)
        assert read.readframes(read.getnframes()) == pcm

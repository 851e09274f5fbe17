"""The end-of-turn model: Smart Turn v3.2 (pipecat-ai, BSD-2-Clause) on the last 8 s of an utterance.

Source: ``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx`` inside the ``pipecat-ai`` 1.14.0 wheel
(``scripts/fetch_smart_turn.py`` takes it out, checking both hashes, into the virtualenv's
``share/web-bot/``); model card
huggingface.co/pipecat-ai/smart-turn-v3, training code github.com/pipecat-ai/smart-turn. A Whisper-tiny encoder with
a classification head, int8-quantised for the CPU (8.7 MB).

Input ``input_features``: float32 ``(batch, 80, 800)``, Whisper log-mel features of exactly 8 s of 16 kHz audio,
made as pipecat's ``LocalSmartTurnAnalyzerV3`` makes them (transformers' ``WhisperFeatureExtractor(chunk_length=8)``
with ``do_normalize=True``): the audio keeps its last 8 s or is zero-padded at the *start* to 8 s, is scaled to zero
mean and unit variance, then 400-sample periodic-Hann frames every 160 samples (reflect-padded by 200 on both sides,
the last frame dropped), power spectrum, 80 Slaney mel bands, log10 floored at 1e-10, clamped to 8 below its maximum
and mapped by ``(x + 4) / 4``. Output ``logits``: float32 ``(batch, 1)``, despite its name already a sigmoid: the
probability that the speaker has finished their turn. Pipecat calls a turn complete above 0.5 (``THRESHOLD``).

The features are computed here in float64 numpy, without transformers or torch (as pipecat's own vendored copy does):
they are within 2.4e-7 of transformers 5.24's, and the model's answers are the same. faster-whisper's float32
``FeatureExtractor`` (``padding=0``, after the same normalisation) is up to 3.7e-6 off, which moved an answer by 1.8e-3
on the int8 model, so it is not used.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 8 * SAMPLE_RATE  # the model hears the last 8 s of the utterance
THRESHOLD = 0.5  # pipecat's: a probability above it means the turn is complete
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
PRECISE_INT8 = "session.x64quantprecision"  # onnxruntime's session option for int8 without saturation on x64
N_MELS = 80
_N_FFT = 400
_HOP = 160

FloatArray = npt.NDArray[np.float64]


def default_model_path() -> Path:
    """Where ``scripts/fetch_smart_turn.py`` (run by ``make install``) puts the model: beside the packages it comes
    from, in the running environment's ``share/web-bot/`` (the Docker image copies the virtualenv whole)."""
    return Path(sys.prefix) / "share" / "web-bot" / MODEL_FILE


class SmartTurnModel:
    """The Smart Turn ONNX session, shared by every stream (onnxruntime runs are thread-safe); loading takes ~30 ms."""

    name = "smart-turn-v3.2"

    def __init__(self, path: str | None = None) -> None:
        self.path = path or str(default_model_path())
        if not Path(self.path).is_file():
            raise RuntimeError(
                f"the Smart Turn model is missing at {self.path}: run `make install` "
                "(or `python scripts/fetch_smart_turn.py`)"
            )
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread: on a 2-core machine with other work, two made a run slower (median ~40 ms against ~28 ms).
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        if not int8_dot_products():
            # Without VNNI, onnxruntime's u8s8 int8 kernels (AVX2, AVX-512) saturate 16-bit sums: on such a CPU the
            # model scored sentences cut mid-way 0.65-0.77 (0.015-0.12 elsewhere) and cut users off. This is its
            # documented remedy (kOrtSessionOptionsAvx2PrecisionMode): slower u8u8 kernels that do not saturate.
            # With VNNI the sums are 32-bit already and the scores identical either way, so it is left off there.
            options.add_session_config_entry(PRECISE_INT8, "1")
        self._session: Any = onnxruntime.InferenceSession(
            self.path, sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(self, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> float:
        """Probability (0..1) that the turn is complete, from the utterance so far as 16 kHz mono PCM16 (little-endian).

        Only the last 8 s count; shorter audio is padded with silence in front. An odd trailing byte is ignored.
        """
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"Smart Turn needs {SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)[-WINDOW_SAMPLES:]
        audio = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        if len(samples):
            audio[-len(samples) :] = samples / np.float32(32768.0)
        features = log_mel(audio)[np.newaxis]
        (probability,) = self._session.run(None, {"input_features": features})
        return float(np.clip(probability.reshape(-1)[0], 0.0, 1.0))


def log_mel(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``(80, 800)`` Whisper log-mel features of exactly 8 s of float32 audio, normalised first (``do_normalize``)."""
    if audio.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"expected {WINDOW_SAMPLES} samples, got shape {audio.shape}")
    # In float32, as transformers normalises its padded float32 buffer; the epsilon is its too.
    normal = (audio - audio.mean()) / np.sqrt(audio.var() + np.float32(1e-7))
    padded = np.pad(normal.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]  # (801, 400), a view
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2  # (801, 201)
    mel: FloatArray = np.log10(np.maximum(power[:-1] @ _mel_filters(), 1e-10)).T  # (80, 800): the last frame dropped
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


@functools.cache
def _hann() -> FloatArray:
    """The periodic Hann window (torch.hann_window's, which Whisper uses)."""
    return np.hanning(_N_FFT + 1)[:-1]


@functools.cache
def _mel_filters() -> FloatArray:
    """``(201, 80)`` Slaney-scale, Slaney-normalised triangular filters from 0 to 8 kHz (librosa's and Whisper's)."""
    top = 15.0 + np.log(SAMPLE_RATE / 2 / 1000.0) * 27.0 / np.log(6.4)  # 8 kHz in Slaney mels: log above 1 kHz
    mels = np.linspace(0.0, top, N_MELS + 2)
    edges = np.where(mels < 15.0, mels * 200.0 / 3.0, 1000.0 * np.exp((mels - 15.0) * np.log(6.4) / 27.0))
    bins = np.linspace(0.0, SAMPLE_RATE // 2, _N_FFT // 2 + 1)
    slopes = edges[np.newaxis, :] - bins[:, np.newaxis]
    rising = -slopes[:, :-2] / np.diff(edges)[:-1]
    falling = slopes[:, 2:] / np.diff(edges)[1:]
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (edges[2:] - edges[:-2]))


def int8_dot_products() -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI or AMX), with which onnxruntime's quantized kernels
    sum in 32 bits; True where /proc/cpuinfo cannot be read (not Linux)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return True
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

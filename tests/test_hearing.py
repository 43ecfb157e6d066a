"""The emulated avatar's ears: speech found in a microphone's frames, and its words recognised."""

import wave

import numpy as np
import pytest
from av import AudioFrame, AudioResampler

from sessions_app.emulator.hearing import Hearing, recognise
from tests.speech import speech_wav

# What aiortc's Opus decoder hands the room: 20 ms of 48 kHz stereo 16-bit samples per frame.
RATE = 48000
FRAME = RATE // 50


def microphone(samples: np.ndarray, rate: int):
    """(seconds since the start, frame) as the visitor's microphone delivers them."""
    frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = AudioResampler(format="s16", layout="stereo", rate=RATE)
    stereo = np.concatenate([f.to_ndarray().reshape(-1) for f in resampler.resample(frame)])
    for start in range(0, len(stereo) // 2 - FRAME + 1, FRAME):
        out = AudioFrame.from_ndarray(
            stereo[start * 2 : (start + FRAME) * 2].reshape(1, -1), format="s16", layout="stereo"
        )
        out.sample_rate = RATE
        yield start / RATE, out


def read_wav(path):
    with wave.open(str(path)) as reader:
        return np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16), reader.getframerate()


def hear(samples, rate, hearing=None):
    hearing = hearing or Hearing()
    return [(at, heard) for at, frame in microphone(samples, rate) for heard in hearing.feed(frame)]


@pytest.fixture
def spoken(tmp_path):
    path = tmp_path / "open.wav"
    length = speech_wav(path, before=0.5, after=2.0)
    return (*read_wav(path), length)


async def test_it_hears_one_utterance_from_its_start_to_its_end_and_its_words(spoken):
    samples, rate, length = spoken
    heard = hear(samples, rate)
    assert [h.kind for _, h in heard] == ["started", "ended"]
    (started_at, _), (ended_at, ended) = heard
    # Told within 300 ms of the speech's start, and within half a second of its end.
    assert 0.5 < started_at < 0.5 + 0.4
    assert 0.5 + length < ended_at < 0.5 + length + 0.6
    words = (await recognise(ended.speech)).split()
    assert "when" in words and "open" in words


async def test_it_hears_nothing_in_silence_or_in_short_beeps():
    rate = 16000
    silence = np.zeros(rate * 4, dtype=np.int16)
    # Chromium's fake microphone, as its echo canceller hands it on: twice a second a loud 400 Hz
    # beep of 40 ms, fading out over the next 130 ms.
    beeps = np.zeros(len(silence))
    loud, fade = int(0.04 * rate), int(0.13 * rate)
    envelope = np.concatenate([np.full(loud, 0.95), 0.15 * np.exp(-3 * np.arange(fade) / fade)])
    tone = 32767 * envelope * np.sin(2 * np.pi * 400 * np.arange(loud + fade) / rate)
    for start in range(0, len(beeps) - len(tone), rate // 2):
        beeps[start : start + len(tone)] = tone
    assert hear(silence, rate) == []
    assert hear(beeps.astype(np.int16), rate) == []


async def test_stopping_ends_the_utterance_going_on_and_keeps_what_was_said(spoken):
    samples, rate, length = spoken
    hearing = Hearing()
    half = samples[: int(rate * (0.5 + length * 0.6))]
    assert [h.kind for _, h in hear(half, rate, hearing)] == ["started"]
    ended = hearing.stop()
    assert ended.kind == "ended" and len(ended.speech) > 16000 * 2 * length * 0.3
    assert "when" in (await recognise(ended.speech)).split()
    assert hearing.stop() is None  # nothing more going on


async def test_an_empty_utterance_has_no_words():
    assert await recognise(b"") == ""

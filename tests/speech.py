"""Speech for the microphone in tests: eSpeak NG (the emulator's, from the espeakng-loader wheel)
says a phrase into a WAV file, with silence around it."""

import wave
from pathlib import Path

import numpy as np

from sessions_app.emulator import media

# A voice and a phrase PocketSphinx recognises word for word; the emulated agent answers "open"
# with its opening hours.
VOICE = "en-us+f2"
PHRASE = "When are you open?"


def speech_wav(path: Path, text: str = PHRASE, before: float = 0.5, after: float = 2.0) -> float:
    """Write `text` spoken between `before` and `after` seconds of silence; returns the speech's length in seconds."""
    samples = media.speech_samples(text, voice=VOICE, words_per_minute=150)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(media.RATE)
        writer.writeframes(np.concatenate([_silence(before), samples, _silence(after)]).tobytes())
    return len(samples) / media.RATE


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * media.RATE), dtype=np.int16)

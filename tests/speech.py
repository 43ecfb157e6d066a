"""Speech for the microphone in tests: eSpeak NG (Debian's espeak-ng, installed by `make speech`)
says a phrase into a WAV file, with silence around it."""

import io
import shutil
import subprocess
import wave
from pathlib import Path

# A voice and a phrase PocketSphinx recognises word for word; the emulated agent answers "open"
# with its opening hours.
VOICE = "en-us+f2"
PHRASE = "When are you open?"


def speech_wav(path: Path, text: str = PHRASE, before: float = 0.5, after: float = 2.0) -> float:
    """Write `text` spoken between `before` and `after` seconds of silence; returns the speech's length in seconds."""
    program = shutil.which("espeak-ng")
    assert program, "espeak-ng is missing: run `make speech`"
    spoken = subprocess.run([program, "-v", VOICE, "-s", "150", "--stdout", text], check=True, capture_output=True)
    with wave.open(io.BytesIO(spoken.stdout)) as reader:
        params = reader.getparams()
        samples = reader.readframes(reader.getnframes())
    bytes_per_second = params.framerate * params.sampwidth
    with wave.open(str(path), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(
            bytes(int(before * bytes_per_second) & ~1) + samples + bytes(int(after * bytes_per_second) & ~1)
        )
    return len(samples) / bytes_per_second

"""What the emulated avatar hears: the visitor's microphone cut into utterances, and their words.

WebRTC's voice activity detector (webrtcvad) marks each 30 ms of the audio, resampled to 16 kHz
mono, as speech or not. An utterance starts when most of the last 300 ms was speech (a click or
Chromium's fake-microphone beep is too short) and ends after 450 ms of silence.
Only a finished utterance goes to PocketSphinx (the en-US model its wheel ships), off the event
loop: recognition is the one costly step, so it runs once per utterance, never on silence.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass

import numpy as np
import webrtcvad
from av import AudioFrame, AudioResampler
from pocketsphinx import Decoder

RATE = 16000
FRAME_BYTES = RATE * 30 // 1000 * 2  # 30 ms of 16-bit samples, a frame size the VAD accepts
# 0 (lenient) to 3 (strict): how surely a frame must sound like speech to count.
VAD_MODE = 2
# Quieter frames are not speech, whatever the VAD says: it keeps calling a loud sound speech for a
# quarter second after the sound ends (so Chromium's fake-microphone beeps would be heard).
QUIET_RMS = 0.01 * 32768  # -40 dBFS
# Speech starts when START_VOICED of the last START_FRAMES frames (300 ms) are voiced...
START_FRAMES = 10
START_VOICED = 8
# ...and ends after END_FRAMES silent frames (450 ms).
END_FRAMES = 15
# A longer utterance is cut there, so one held breath cannot grow a recognition without end.
MAX_FRAMES = 20 * 1000 // 30
# PocketSphinx's search width: a tenth of its default recognises as well here at a third of the CPU.
MAX_HMMS_PER_FRAME = 3000


@dataclass
class Heard:
    """A change in what the visitor is doing: "started" speaking, or "ended" with the speech (16 kHz PCM)."""

    kind: str
    speech: bytes = b""


class Hearing:
    """One visitor's ears: fed with the microphone's decoded frames, tells when speech starts and ends."""

    def __init__(self):
        self._vad = webrtcvad.Vad(VAD_MODE)
        self._resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        self._pending = bytearray()
        self._recent = collections.deque(maxlen=START_FRAMES)  # (frame, voiced) before speech starts
        self._speech: bytearray | None = None  # the utterance, while the visitor speaks
        self._frames = 0
        self._silent = 0

    @property
    def speaking(self) -> bool:
        return self._speech is not None

    def feed(self, frame: AudioFrame) -> list[Heard]:
        heard = []
        for resampled in self._resampler.resample(frame):
            self._pending += resampled.to_ndarray().tobytes()
        while len(self._pending) >= FRAME_BYTES:
            chunk = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            if change := self._step(chunk, self._voiced(chunk)):
                heard.append(change)
        return heard

    def _voiced(self, chunk: bytes) -> bool:
        samples = np.frombuffer(chunk, dtype=np.int16).astype(np.float32)
        return float(np.sqrt(np.mean(samples**2))) >= QUIET_RMS and self._vad.is_speech(chunk, RATE)

    def _step(self, chunk: bytes, voiced: bool) -> Heard | None:
        if self._speech is None:
            self._recent.append((chunk, voiced))
            if sum(v for _, v in self._recent) < START_VOICED:
                return None
            # The frames that made up our mind are the start of the utterance.
            self._speech = bytearray(b"".join(c for c, _ in self._recent))
            self._frames, self._silent = len(self._recent), 0
            self._recent.clear()
            return Heard("started")
        self._speech += chunk
        self._frames += 1
        self._silent = 0 if voiced else self._silent + 1
        if self._silent >= END_FRAMES or self._frames >= MAX_FRAMES:
            return self.stop()
        return None

    def stop(self) -> Heard | None:
        """Stop hearing now (the visitor is no longer heard): the utterance so far ends here, if one was going on."""
        speech, self._speech = self._speech, None
        self._pending.clear()
        self._recent.clear()
        return Heard("ended", bytes(speech)) if speech is not None else None


_decoder: Decoder | None = None
_decoder_lock = threading.Lock()  # one decoder per process, and a decoder decodes one utterance at a time


def _decode(speech: bytes) -> str:
    global _decoder
    with _decoder_lock:
        if _decoder is None:
            _decoder = Decoder(samprate=RATE, loglevel="FATAL", maxhmmpf=MAX_HMMS_PER_FRAME)
        if not speech:
            return ""
        _decoder.start_utt()
        _decoder.process_raw(speech, full_utt=True)
        _decoder.end_utt()
        hypothesis = _decoder.hyp()
    return hypothesis.hypstr.strip() if hypothesis else ""


async def recognise(speech: bytes) -> str:
    """The words PocketSphinx finds in an utterance (16 kHz mono PCM), "" for none; off the event loop."""
    return await asyncio.to_thread(_decode, speech)


async def load_recogniser():
    """Load the model (a second of CPU, once per process) while the first utterance is still spoken."""
    if _decoder is None:
        await recognise(b"")

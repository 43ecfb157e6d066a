"""What the emulated avatar `heygen` publishes: a drawn face as video and synthesized speech as audio.

The face's mouth opens with the loudness of the audio being sent at that moment, so picture and
sound stay in step. Frames are small and few (SIZE, FPS) because VP8 encoding is what a room costs.
Speech comes from eSpeak NG (Debian's `espeak-ng`); without it the avatar speaks in silence.
"""

from __future__ import annotations

import asyncio
import fractions
import io
import logging
import shutil
import time
import wave

import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, VideoFrame

logger = logging.getLogger(__name__)

SIZE = 160
FPS = 10
RATE = 22050  # eSpeak NG's own output rate; aiortc resamples for Opus
FRAME_SAMPLES = RATE // 50  # 20 ms
MOUTH_LEVELS = 4
SYNTH_TIMEOUT_SECONDS = 20


class Voice:
    """The avatar's mouth: plays one utterance's samples and knows how loud the last 20 ms were."""

    def __init__(self):
        self.samples = np.zeros(0, dtype=np.int16)
        self.position = 0
        self.level = 0.0
        self.listening = False

    def say(self, samples: np.ndarray | None):
        self.samples = samples if samples is not None else np.zeros(0, dtype=np.int16)
        self.position = 0

    def hush(self):
        self.say(None)

    def read(self, count: int) -> np.ndarray:
        chunk = self.samples[self.position : self.position + count]
        self.position += len(chunk)
        if len(chunk) < count:
            chunk = np.concatenate([chunk, np.zeros(count - len(chunk), dtype=np.int16)])
        self.level = float(np.sqrt(np.mean(chunk.astype(np.float32) ** 2))) / 32768
        return chunk


class _PacedTrack(MediaStreamTrack):
    """A track whose recv() returns one frame per period, on the wall clock."""

    period: float

    def __init__(self, voice: Voice):
        super().__init__()
        self.voice = voice
        self.started = None
        self.count = 0

    async def _tick(self) -> int:
        if self.started is None:
            self.started = time.monotonic()
        else:
            self.count += 1
            wait = self.started + self.count * self.period - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        return self.count


class SpeechAudioTrack(_PacedTrack):
    kind = "audio"
    period = FRAME_SAMPLES / RATE

    async def recv(self) -> AudioFrame:
        count = await self._tick()
        frame = AudioFrame.from_ndarray(self.voice.read(FRAME_SAMPLES).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = count * FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class FaceVideoTrack(_PacedTrack):
    kind = "video"
    period = 1 / FPS

    async def recv(self) -> VideoFrame:
        count = await self._tick()
        mouth = min(MOUTH_LEVELS - 1, int(self.voice.level * 12 * MOUTH_LEVELS))
        blink = (count % (4 * FPS)) == 0
        frame = VideoFrame.from_ndarray(_faces()[(mouth, blink, self.voice.listening)], format="yuv420p")
        frame.pts = count * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


_FACES: dict = {}


def _faces() -> dict:
    """Every face the avatar can make, drawn once per process as yuv420p arrays."""
    if not _FACES:
        for mouth in range(MOUTH_LEVELS):
            for blink in (False, True):
                for listening in (False, True):
                    rgb = _draw(mouth, blink, listening)
                    yuv = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
                    _FACES[(mouth, blink, listening)] = yuv
    return _FACES


def _draw(mouth: int, blink: bool, listening: bool) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    image = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
    image[:] = (223, 233, 243)

    def ellipse(cx, cy, rx, ry, colour, upper_only=False):
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1
        if upper_only:
            inside &= y <= cy
        image[inside] = colour

    ellipse(0.5, 1.06, 0.42, 0.3, (53, 87, 125))  # shoulders
    ellipse(0.5, 0.47, 0.26, 0.32, (241, 201, 165))  # head
    ellipse(0.5, 0.24, 0.28, 0.14, (74, 52, 38), upper_only=True)  # hair
    lift = 0.03 if listening else 0
    for dx in (-0.105, 0.105):
        ellipse(0.5 + dx, 0.43, 0.028, 0.004 if blink else 0.028, (43, 43, 43))  # eyes
        image[(abs(x - 0.5 - dx) < 0.045) & (abs(y - 0.355 + lift) < 0.007)] = (74, 52, 38)  # brows
    if mouth:
        ellipse(0.5, 0.64, 0.075, 0.012 + 0.016 * mouth, (140, 59, 59))
    else:
        ellipse(0.5, 0.63, 0.08, 0.012, (140, 59, 59))
    return image


async def synthesize(text: str) -> np.ndarray | None:
    """Speech for `text` as mono 16-bit samples at RATE, or None when eSpeak NG is missing or fails."""
    program = shutil.which("espeak-ng")
    if program is None or not text.strip():
        return None
    process = await asyncio.create_subprocess_exec(
        program,
        "-v",
        "en-us",
        "-s",
        "170",
        "--stdout",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        wav, _ = await asyncio.wait_for(process.communicate(text.encode()), SYNTH_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        logger.warning("espeak-ng took longer than %s s; the avatar speaks in silence", SYNTH_TIMEOUT_SECONDS)
        return None
    try:
        with wave.open(io.BytesIO(wav)) as reader:
            return np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    except (wave.Error, EOFError):
        logger.warning("espeak-ng gave no usable audio; the avatar speaks in silence")
        return None

"""What the emulated avatar `heygen` publishes: a drawn face as video and synthesized speech as audio.

The face's mouth opens with the loudness of the audio being sent at that moment, so picture and
sound stay in step. A room's cost is aiortc's work for each packet more than the encoding, so the
tracks send few: a frame only when the face changes (and a still one every STILL_SECONDS), Opus
packets of PACKET_SECONDS, encoded once per utterance, and while silent one every SILENCE_SECONDS.
Speech comes from the eSpeak NG library and voices the `espeakng-loader` wheel ships.
"""

from __future__ import annotations

import asyncio
import ctypes
import fractions
import logging
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import espeakng_loader
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

logger = logging.getLogger(__name__)

SIZE = 160
FPS = 10
# A still face is sent again this often, so that a lost or requested keyframe comes within it.
STILL_SECONDS = 1.0
MOUTH_LEVELS = 4

RATE = 22050  # eSpeak NG's output rate
VOICE, WORDS_PER_MINUTE = "en-us", 170
SYNTH_TIMEOUT_SECONDS = 20
OPUS_RATE = 48000
# Opus packets of 120 ms, Opus's longest (aiortc's own encoder makes 20 ms ones): a sixth of the packets.
PACKET_SECONDS = 0.12
PACKET_SAMPLES = round(OPUS_RATE * PACKET_SECONDS)
# While the avatar is silent, one silent packet this often keeps the stream alive, as Opus DTX does.
SILENCE_SECONDS = 0.48
OPUS_BITRATE = 32000
# Opus's effort 0-10 (default 10): eSpeak NG's plain voice sounds the same at 3, for half the encoding.
OPUS_COMPLEXITY = 3


@dataclass
class Utterance:
    """One line of speech, encoded: Opus packets of PACKET_SECONDS and how loud each one is."""

    packets: list[bytes]
    levels: list[float]

    @property
    def seconds(self) -> float:
        return len(self.packets) * PACKET_SECONDS


class Voice:
    """The avatar's mouth: plays one utterance's packets and knows how loud the last one was."""

    def __init__(self):
        self.utterance: Utterance | None = None
        self.position = 0
        self.level = 0.0
        self.listening = False

    def say(self, utterance: Utterance | None):
        self.utterance = utterance
        self.position = 0

    def hush(self):
        self.say(None)

    def next_packet(self) -> bytes | None:
        """The next packet of what is being said, or None when nothing is."""
        utterance = self.utterance
        if utterance is None or self.position >= len(utterance.packets):
            self.level = 0.0
            return None
        packet, self.level = utterance.packets[self.position], utterance.levels[self.position]
        self.position += 1
        return packet


class _PacedTrack(MediaStreamTrack):
    """A track that ticks once per period, on the wall clock."""

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
    """The voice as Opus packets already encoded (aiortc sends an av.Packet as it is)."""

    kind = "audio"
    period = PACKET_SECONDS

    def __init__(self, voice: Voice):
        super().__init__(voice)
        self.sent_at = None

    async def recv(self) -> av.Packet:
        while True:
            count = await self._tick()
            data = self.voice.next_packet()
            if data is None and self.sent_at is not None and (count - self.sent_at) * self.period < SILENCE_SECONDS:
                continue
            break
        self.sent_at = count
        packet = av.Packet(data if data is not None else _silence())
        packet.pts = count * PACKET_SAMPLES
        packet.time_base = fractions.Fraction(1, OPUS_RATE)
        return packet


class FaceVideoTrack(_PacedTrack):
    """The face, a frame when it changes (aiortc's VP8 encoder codes the difference)."""

    kind = "video"
    period = 1 / FPS

    def __init__(self, voice: Voice):
        super().__init__(voice)
        self.shown = None
        self.shown_at = 0

    async def recv(self) -> VideoFrame:
        while True:
            count = await self._tick()
            mouth = min(MOUTH_LEVELS - 1, int(self.voice.level * 12 * MOUTH_LEVELS))
            blink = (count % (4 * FPS)) == 0
            face = (mouth, blink, self.voice.listening)
            if face != self.shown or (count - self.shown_at) * self.period >= STILL_SECONDS:
                break
        self.shown, self.shown_at = face, count
        frame = VideoFrame.from_ndarray(_faces()[face], format="yuv420p")
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


# Speech: eSpeak NG is one instance per process with global settings, so one thread uses it.
_speaker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
_lock = threading.Lock()
_espeak = None
_chunks: list[np.ndarray] = []
_speaking_as: tuple[str, int] | None = None
_deadline = 0.0
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_RATE_PARAMETER = 1
_POS_CHARACTER, _CHARS_UTF8, _END_PAUSE = 1, 1, 0x1000


@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
def _collect(wav, count, events):
    if wav and count > 0:
        _chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
    return 1 if time.monotonic() > _deadline else 0  # 1 stops the synthesis


def _library():
    global _espeak
    if _espeak is None:
        library = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        if library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT) != RATE:
            raise RuntimeError("eSpeak NG did not start")
        library.espeak_SetSynthCallback(_collect)
        _espeak = library
    return _espeak


def speech_samples(text: str, voice: str = VOICE, words_per_minute: int = WORDS_PER_MINUTE) -> np.ndarray:
    """Speech for `text` as mono 16-bit samples at RATE (empty for blank text). Blocks: not for the loop."""
    global _deadline, _speaking_as
    data = text.encode()
    with _lock:
        library = _library()
        if _speaking_as != (voice, words_per_minute):  # the library keeps one voice at a time
            library.espeak_SetVoiceByName(voice.encode())
            library.espeak_SetParameter(_RATE_PARAMETER, words_per_minute, 0)
            _speaking_as = (voice, words_per_minute)
        _chunks.clear()
        _deadline = time.monotonic() + SYNTH_TIMEOUT_SECONDS
        if data.strip():
            flags = _CHARS_UTF8 | _END_PAUSE
            library.espeak_Synth(ctypes.c_char_p(data), len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
        if time.monotonic() > _deadline:
            raise TimeoutError(f"eSpeak NG took longer than {SYNTH_TIMEOUT_SECONDS} s")
        return np.concatenate(_chunks) if _chunks else np.zeros(0, dtype=np.int16)


def write_wav(text: str, path) -> None:
    """Write the avatar's voice saying `text` to a WAV file (mono, 16-bit, RATE), e.g. for a test's microphone."""
    samples = speech_samples(text)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes(samples.tobytes())


def _opus_encoder():
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = OPUS_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = OPUS_BITRATE
    codec.time_base = fractions.Fraction(1, OPUS_RATE)
    codec.options = {
        "application": "voip",
        "frame_duration": str(round(PACKET_SECONDS * 1000)),
        "compression_level": str(OPUS_COMPLEXITY),
    }
    return codec


def encode(samples: np.ndarray) -> Utterance:
    """Samples at RATE as Opus packets of PACKET_SECONDS, each with its loudness (0 to 1)."""
    codec = _opus_encoder()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE, frame_size=PACKET_SAMPLES)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = 0
    frame.time_base = fractions.Fraction(1, RATE)
    packets = []
    for resampled in resampler.resample(frame) + resampler.resample(None):
        packets += codec.encode(resampled)
    packets += codec.encode(None)
    span = round(RATE * PACKET_SECONDS)
    levels = [
        float(np.sqrt(np.mean(samples[i * span : (i + 1) * span].astype(np.float32) ** 2))) / 32768
        if i * span < len(samples)
        else 0.0
        for i in range(len(packets))
    ]
    return Utterance([bytes(p) for p in packets], levels)


_SILENCE: list[bytes] = []


def _silence() -> bytes:
    if not _SILENCE:
        _SILENCE.extend(encode(np.zeros(round(RATE * PACKET_SECONDS), dtype=np.int16)).packets[-1:])
    return _SILENCE[0]


def _utterance(text: str) -> Utterance | None:
    try:
        samples = speech_samples(text)
    except TimeoutError as error:
        logger.warning("%s; the avatar speaks in silence", error)
        return None
    return encode(samples) if len(samples) else None


async def synthesize(text: str) -> Utterance | None:
    """Speech for `text`, encoded, or None for blank text (or one too long to say); made off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_speaker, _utterance, text)

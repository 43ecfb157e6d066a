"""The emulated avatar's media: its voice from the eSpeak NG library of the espeakng-loader wheel,
and tracks that send a packet only when there is something new to show or hear."""

import time
import wave

import av
import numpy as np

from sessions_app.emulator import media


def test_the_voice_speaks_each_line_for_about_as_long_as_it_takes_to_say(tmp_path):
    short, long = media.speech_samples("Hello."), media.speech_samples("Hello, we are open from nine to five today.")
    assert 0.3 < len(short) / media.RATE < len(long) / media.RATE < 5
    assert np.abs(long).max() > 1000  # sound, not silence
    assert len(media.speech_samples("   ")) == 0
    path = tmp_path / "hello.wav"
    media.write_wav("Hello.", path)
    with wave.open(str(path)) as reader:
        assert (reader.getframerate(), reader.getnchannels()) == (media.RATE, 1)
        assert abs(reader.getnframes() - len(short)) < media.RATE / 20  # eSpeak NG varies a little


async def test_a_line_is_sent_as_opus_packets_that_decode_to_its_length():
    utterance = await media.synthesize("Hello, we are open from nine to five today.")
    decoder = av.CodecContext.create("libopus", "r")
    decoded = sum(frame.samples for data in utterance.packets for frame in decoder.decode(av.Packet(data)))
    spoken = len(media.speech_samples("Hello, we are open from nine to five today.")) / media.RATE
    assert abs(decoded / media.OPUS_RATE - spoken) < 2 * media.PACKET_SECONDS
    assert len(utterance.levels) == len(utterance.packets) and max(utterance.levels) > 0.05
    assert await media.synthesize("  ") is None


async def test_the_voice_track_sends_the_line_then_sparse_silence():
    voice = media.Voice()
    track = media.SpeechAudioTrack(voice)
    utterance = await media.synthesize("Hello there.")
    voice.say(utterance)
    sent = [bytes(await track.recv()) for _ in utterance.packets]
    assert sent == utterance.packets
    began = time.monotonic()
    silent = await track.recv()
    assert bytes(silent) not in utterance.packets and voice.level == 0
    assert time.monotonic() - began >= media.SILENCE_SECONDS - media.PACKET_SECONDS


async def test_the_face_is_sent_when_it_changes_and_a_still_one_once_a_second():
    voice = media.Voice()
    track = media.FaceVideoTrack(voice)
    await track.recv()  # a blink, then the eyes open at the next tick
    first = await track.recv()
    began = time.monotonic()
    again = await track.recv()  # a still face: not before a second (or a blink)
    assert time.monotonic() - began >= 0.9 * media.STILL_SECONDS
    assert again.pts > first.pts
    voice.level = 0.2  # the mouth opens: the next tick shows it
    began = time.monotonic()
    await track.recv()
    assert time.monotonic() - began < 2 / media.FPS

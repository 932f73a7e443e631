"""Deterministic inputs of the example actions: ``N.jpg``, ``N.wav``, ``N.avi`` of varied sizes.

``python -m actions.inputs --out DIR --image N --audio N --video N --seed S`` writes
``DIR/1.jpg ... DIR/N.jpg`` etc.  ``DIR`` is the input container, i.e.
``$FAASLOAD_STORAGE/<incont>`` (``faasload-inputs`` by default).  The same seed
writes byte-identical files; each file's content and size come from its own random
stream (SHA-256 of seed, kind and number), so ``--image 20`` extends ``--image 10``.

The payloads are synthetic, in formats the standard library can read, under the
extensions the generator mode expects (docs/actions.md says so plainly):

* ``N.jpg``: a binary PPM (``P6``, 8-bit RGB) picture, 24×24 to 160×120 pixels:
  gradients, rectangles and noise.  Not a JPEG: decoding JPEG needs a library.
* ``N.wav``: a real WAV (PCM 16-bit mono 8 kHz, 0.25 to 2 s): tones, sweeps and noise.
* ``N.avi``: a real RIFF AVI with uncompressed 24-bit frames (``00db`` chunks, ``idx1``
  index), 4 to 24 frames of 32×24 to 64×48 pixels: a moving square over a gradient.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import random
import struct
import sys
import wave
from pathlib import Path

KINDS = {"image": "jpg", "audio": "wav", "video": "avi"}
AUDIO_RATE_HZ = 8000


def stream(seed: int, kind: str, number: int) -> random.Random:
    """The random stream of one input file (stable across Python versions: only getrandbits is used)."""
    digest = hashlib.sha256(f"faasload-inputs\0{seed}\0{kind}\0{number}".encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


def between(rng: random.Random, low: int, high: int) -> int:
    """An integer in [low, high] from getrandbits (rejection sampling)."""
    span = high - low + 1
    bits = span.bit_length()
    while True:
        value = rng.getrandbits(bits)
        if value < span:
            return low + value


def noise(rng: random.Random, count: int) -> bytes:
    return rng.getrandbits(8 * count).to_bytes(count, "little") if count else b""


# --------------------------------------------------------------------------- image (PPM payload)


def image_pixels(rng: random.Random, width: int, height: int) -> bytearray:
    """RGB rows, top to bottom: a gradient, a few rectangles, and noise."""
    pixels = bytearray(width * height * 3)
    grain = noise(rng, width * height)
    tint = [between(rng, 0, 255) for _ in range(3)]
    for y in range(height):
        for x in range(width):
            i = y * width + x
            g = grain[i] & 31
            pixels[3 * i] = (x * 255 // max(1, width - 1) + g) & 255
            pixels[3 * i + 1] = (y * 255 // max(1, height - 1) + g) & 255
            pixels[3 * i + 2] = (tint[2] + g) & 255
    for _ in range(between(rng, 1, 4)):
        x0, y0 = between(rng, 0, width - 1), between(rng, 0, height - 1)
        x1, y1 = between(rng, x0, width - 1), between(rng, y0, height - 1)
        colour = bytes(tint[c] ^ between(rng, 0, 255) for c in range(3))
        for y in range(y0, y1 + 1):
            start = 3 * (y * width + x0)
            pixels[start:start + 3 * (x1 - x0 + 1)] = colour * (x1 - x0 + 1)
    return pixels


def image_bytes(rng: random.Random) -> bytes:
    width, height = between(rng, 24, 160), between(rng, 24, 120)
    return b"P6\n%d %d\n255\n" % (width, height) + bytes(image_pixels(rng, width, height))


# --------------------------------------------------------------------------- audio (WAV)


def audio_bytes(rng: random.Random) -> bytes:
    frames = between(rng, AUDIO_RATE_HZ // 4, 2 * AUDIO_RATE_HZ)
    base_hz, sweep_hz = between(rng, 110, 880), between(rng, 0, 1200)
    amplitude = between(rng, 2000, 12000)
    grain = noise(rng, frames)
    samples = bytearray(2 * frames)
    for n in range(frames):
        t = n / AUDIO_RATE_HZ
        hz = base_hz + sweep_hz * n / frames
        value = amplitude * math.sin(2 * math.pi * hz * t) + (grain[n] - 128) * 8
        struct.pack_into("<h", samples, 2 * n, max(-32768, min(32767, int(value))))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE_HZ)
        wav.writeframes(bytes(samples))
    return out.getvalue()


# --------------------------------------------------------------------------- video (uncompressed AVI)


def chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def avi_bytes(frames: list[bytes], width: int, height: int, fps: int = 10) -> bytes:
    """A RIFF AVI of 24-bit uncompressed frames (each a bottom-up BGR DIB, rows padded to 4 bytes)."""
    frame_size = len(frames[0]) if frames else 0
    avih = struct.pack("<14I", 1_000_000 // fps, frame_size * fps, 0, 0x10, len(frames), 0, 1, frame_size,
                       width, height, 0, 0, 0, 0)
    strh = struct.pack("<4s4sIHHIIIIIIiI4h", b"vids", b"DIB ", 0, 0, 0, 0, 1, fps, 0, len(frames),
                       frame_size, -1, 0, 0, 0, width, height)
    strf = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, frame_size, 0, 0, 0, 0)
    hdrl = b"hdrl" + chunk(b"avih", avih) + chunk(b"LIST", b"strl" + chunk(b"strh", strh) + chunk(b"strf", strf))
    movi, index, offset = [b"movi"], [], 4
    for frame in frames:
        movi.append(chunk(b"00db", frame))
        index.append(struct.pack("<4sIII", b"00db", 0x10, offset, len(frame)))
        offset += 8 + len(frame) + len(frame) % 2
    body = b"AVI " + chunk(b"LIST", hdrl) + chunk(b"LIST", b"".join(movi)) + chunk(b"idx1", b"".join(index))
    return b"RIFF" + struct.pack("<I", len(body)) + body


def video_bytes(rng: random.Random) -> bytes:
    width, height = between(rng, 32, 64), between(rng, 24, 48)
    count, side = between(rng, 4, 24), between(rng, 4, 12)
    row_bytes = (3 * width + 3) & ~3
    background = bytearray(row_bytes * height)
    for y in range(height):
        for x in range(width):
            background[y * row_bytes + 3 * x:y * row_bytes + 3 * x + 3] = bytes((x * 4 & 255, y * 5 & 255, 96))
    x, y = between(rng, 0, width - side), between(rng, 0, height - side)
    dx, dy = between(rng, 1, 3), between(rng, 1, 3)
    frames = []
    for _ in range(count):
        frame = bytearray(background)
        for row in range(y, y + side):
            start = row * row_bytes + 3 * x
            frame[start:start + 3 * side] = b"\xff\xe0\x20" * side
        frames.append(bytes(frame))
        if not 0 <= x + dx <= width - side:
            dx = -dx
        if not 0 <= y + dy <= height - side:
            dy = -dy
        x, y = x + dx, y + dy
    return avi_bytes(frames, width, height)


MAKERS = {"image": image_bytes, "audio": audio_bytes, "video": video_bytes}


def generate(out: Path, counts: dict[str, int], seed: int) -> list[Path]:
    """Write ``counts[kind]`` inputs of each kind into ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, count in counts.items():
        for number in range(1, count + 1):
            path = out / f"{number}.{KINDS[kind]}"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(MAKERS[kind](stream(seed, kind, number)))
            tmp.replace(path)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actions.inputs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="input container directory, e.g. $FAASLOAD_STORAGE/faasload-inputs")
    for kind, ext in KINDS.items():
        parser.add_argument(f"--{kind}", type=int, default=0, metavar="N", help=f"write 1.{ext} ... N.{ext}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the contents (default 0)")
    args = parser.parse_args(argv)
    counts = {kind: getattr(args, kind) for kind in KINDS}
    if any(n < 0 for n in counts.values()):
        parser.error("counts must be >= 0")
    paths = generate(args.out, counts, args.seed)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} inputs ({total} bytes) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

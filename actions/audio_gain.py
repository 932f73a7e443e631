"""FaaSLoad example action (input kind audio): change the gain and the sample rate of a WAV.

Parameters: ``incont``, ``object``, ``outcont`` (storage, see docs/actions.md),
``gain_db`` (float, gain in dB, clipped to 16 bits), ``rate`` (int, output sample
rate in Hz; resampled by linear interpolation).  Reads a PCM 16-bit WAV
(``N.wav``, see actions/inputs.py) with the standard ``wave`` module, writes
``$FAASLOAD_STORAGE/<outcont>/<stem>-audio_gain-<activation>.wav``.
Standard library only.
"""

import array
import os
import sys
import time
import wave


def _path(storage, container, name):
    for part in (container, name):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"invalid storage name {part!r}")
    return os.path.join(storage, container, name)


def _read(path):
    with wave.open(path, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        channels, rate = wav.getnchannels(), wav.getframerate()
        samples = array.array("h", wav.readframes(wav.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return channels, rate, samples


def _transform(samples, channels, rate, new_rate, gain_db):
    factor = 10 ** (gain_db / 20)
    frames = len(samples) // channels
    new_frames = max(1, frames * new_rate // rate) if frames else 0
    step = rate / new_rate
    out = array.array("h", bytes(2 * new_frames * channels))
    for n in range(new_frames):
        pos = n * step
        i = int(pos)
        j = min(i + 1, frames - 1)
        w = pos - i
        for c in range(channels):
            a = samples[i * channels + c]
            b = samples[j * channels + c]
            value = (a + (b - a) * w) * factor
            out[n * channels + c] = -32768 if value < -32768 else 32767 if value > 32767 else int(value)
    return out


def main(args):
    try:
        incont, name, outcont = args["incont"], args["object"], args["outcont"]
        gain_db = float(args.get("gain_db", 0.0))
        new_rate = int(args.get("rate", 8000))
    except KeyError as exc:
        return {"error": f"missing parameter {exc.args[0]!r} (FaaSLoad passes incont, object, outcont)"}
    except (TypeError, ValueError) as exc:
        return {"error": f"bad parameter: {exc}"}
    if not 1000 <= new_rate <= 192000:
        return {"error": f"bad parameter: rate={new_rate} (1000 to 192000 Hz)"}
    storage = os.environ.get("FAASLOAD_STORAGE")
    if not storage:
        return {"error": "FAASLOAD_STORAGE is not set: the platform must hand the storage directory to actions"}
    try:
        t0 = time.perf_counter()
        channels, rate, samples = _read(_path(storage, incont, name))
        t1 = time.perf_counter()
        out = _transform(samples, channels, rate, new_rate, gain_db)
        if sys.byteorder == "big":
            out.byteswap()
        t2 = time.perf_counter()
        stem, _, ext = name.rpartition(".")
        activation = os.environ.get("__OW_ACTIVATION_ID") or str(os.getpid())
        target = _path(storage, outcont, f"{stem or ext}-audio_gain-{activation}.{ext or 'wav'}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with wave.open(target, "wb") as wav:
            wav.setnchannels(channels)
            wav.setsampwidth(2)
            wav.setframerate(new_rate)
            wav.writeframes(out.tobytes())
        size = os.path.getsize(target)
        t3 = time.perf_counter()
    except (OSError, ValueError, EOFError, wave.Error) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"outputsize": size,
            "times": {"extract": (t1 - t0) * 1e3, "transform": (t2 - t1) * 1e3, "load": (t3 - t2) * 1e3},
            "input": {"rate": rate, "frames": len(samples) // channels}, "output": {"rate": new_rate}}

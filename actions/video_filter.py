"""FaaSLoad example action (input kind video): filter the frames of an uncompressed AVI.

Parameters: ``incont``, ``object``, ``outcont`` (storage, see docs/actions.md),
``filter`` (``grayscale``, ``invert`` or ``edges``), ``step`` (int, keep every
``step``-th frame).  Reads a RIFF AVI of 24-bit uncompressed frames (``N.avi``, see
actions/inputs.py), filters each kept frame pixel by pixel, writes an AVI of the
same format to ``$FAASLOAD_STORAGE/<outcont>/<stem>-video_filter-<activation>.avi``.
Standard library only.
"""

import os
import struct
import time

FILTERS = ("grayscale", "invert", "edges")


def _path(storage, container, name):
    for part in (container, name):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"invalid storage name {part!r}")
    return os.path.join(storage, container, name)


def _chunks(data, start, end):
    while start + 8 <= end:
        fourcc, size = data[start:start + 4], struct.unpack_from("<I", data, start + 4)[0]
        yield fourcc, start + 8, size
        start += 8 + size + size % 2


def _parse_avi(data):
    if data[:4] != b"RIFF" or data[8:12] != b"AVI ":
        raise ValueError("not a RIFF AVI file")
    width = height = bits = None
    frames = []
    todo = [(12, len(data))]
    while todo:
        start, end = todo.pop()
        for fourcc, offset, size in _chunks(data, start, end):
            if fourcc == b"LIST":
                todo.append((offset + 4, offset + size))
            elif fourcc == b"strf":
                _, width, height, _, bits = struct.unpack_from("<IiiHH", data, offset)
            elif fourcc[2:] in (b"db", b"dc"):
                frames.append((offset, data[offset:offset + size]))
    if width is None or height is None or bits != 24:
        raise ValueError("expected a video stream of 24-bit uncompressed frames")
    frames.sort()
    return width, abs(height), [frame for _, frame in frames]


def _chunk(fourcc, data):
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _write_avi(frames, width, height, fps=10):
    frame_size = len(frames[0]) if frames else 0
    avih = struct.pack("<14I", 1000000 // fps, frame_size * fps, 0, 0x10, len(frames), 0, 1, frame_size,
                       width, height, 0, 0, 0, 0)
    strh = struct.pack("<4s4sIHHIIIIIIiI4h", b"vids", b"DIB ", 0, 0, 0, 0, 1, fps, 0, len(frames),
                       frame_size, -1, 0, 0, 0, width, height)
    strf = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, frame_size, 0, 0, 0, 0)
    hdrl = b"hdrl" + _chunk(b"avih", avih) + _chunk(b"LIST", b"strl" + _chunk(b"strh", strh) + _chunk(b"strf", strf))
    movi, index, offset = [b"movi"], [], 4
    for frame in frames:
        movi.append(_chunk(b"00db", frame))
        index.append(struct.pack("<4sIII", b"00db", 0x10, offset, len(frame)))
        offset += 8 + len(frame) + len(frame) % 2
    body = b"AVI " + _chunk(b"LIST", hdrl) + _chunk(b"LIST", b"".join(movi)) + _chunk(b"idx1", b"".join(index))
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _filter(frame, width, height, kind):
    row_bytes = (3 * width + 3) & ~3
    out = bytearray(len(frame))
    for y in range(height):
        base = y * row_bytes
        previous = None
        for x in range(width):
            i = base + 3 * x
            b, g, r = frame[i], frame[i + 1], frame[i + 2]
            if kind == "invert":
                out[i], out[i + 1], out[i + 2] = 255 - b, 255 - g, 255 - r
                continue
            luma = (299 * r + 587 * g + 114 * b) // 1000
            if kind == "edges":
                value = 0 if previous is None else min(255, 4 * abs(luma - previous))
                previous = luma
                luma = value
            out[i] = out[i + 1] = out[i + 2] = luma
    return bytes(out)


def main(args):
    try:
        incont, name, outcont = args["incont"], args["object"], args["outcont"]
        kind = str(args.get("filter", "grayscale"))
        step = int(args.get("step", 1))
    except KeyError as exc:
        return {"error": f"missing parameter {exc.args[0]!r} (FaaSLoad passes incont, object, outcont)"}
    except (TypeError, ValueError) as exc:
        return {"error": f"bad parameter: {exc}"}
    if kind not in FILTERS or step < 1:
        return {"error": f"bad parameters: filter={kind!r} step={step} (filter one of {', '.join(FILTERS)}, step >= 1)"}
    storage = os.environ.get("FAASLOAD_STORAGE")
    if not storage:
        return {"error": "FAASLOAD_STORAGE is not set: the platform must hand the storage directory to actions"}
    try:
        t0 = time.perf_counter()
        with open(_path(storage, incont, name), "rb") as f:
            width, height, frames = _parse_avi(f.read())
        t1 = time.perf_counter()
        kept = [_filter(frame, width, height, kind) for frame in frames[::step]]
        out = _write_avi(kept, width, height)
        t2 = time.perf_counter()
        stem, _, ext = name.rpartition(".")
        activation = os.environ.get("__OW_ACTIVATION_ID") or str(os.getpid())
        target = _path(storage, outcont, f"{stem or ext}-video_filter-{activation}.{ext or 'avi'}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(out)
        t3 = time.perf_counter()
    except (OSError, ValueError, struct.error) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"outputsize": len(out),
            "times": {"extract": (t1 - t0) * 1e3, "transform": (t2 - t1) * 1e3, "load": (t3 - t2) * 1e3},
            "input": {"width": width, "height": height, "frames": len(frames)}, "output": {"frames": len(kept)}}

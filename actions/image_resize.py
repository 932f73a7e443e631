"""FaaSLoad example action (input kind image): resize a picture.

Parameters: ``incont``, ``object``, ``outcont`` (storage, see docs/actions.md),
``width`` (int, output width in pixels; the height keeps the aspect ratio),
``mode`` (``nearest`` or ``bilinear``).  The input is a binary PPM (P6) payload
stored as ``N.jpg`` (actions/inputs.py); the output is the same format, written to
``$FAASLOAD_STORAGE/<outcont>/<stem>-image_resize-<activation>.jpg``.
Standard library only: it runs under the platform's plain Python 3.11.
"""

import os
import time


def _path(storage, container, name):
    for part in (container, name):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"invalid storage name {part!r}")
    return os.path.join(storage, container, name)


def _parse_ppm(data):
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError("not a binary 8-bit PPM (P6) picture")
    width, height = int(fields[1]), int(fields[2])
    pixels = data[pos + 1:pos + 1 + 3 * width * height]
    if len(pixels) != 3 * width * height:
        raise ValueError("truncated picture")
    return width, height, pixels


def _nearest(src, width, height, new_w, new_h):
    out = bytearray(3 * new_w * new_h)
    columns = [3 * (x * width // new_w) for x in range(new_w)]
    for y in range(new_h):
        row = 3 * width * (y * height // new_h)
        base = 3 * new_w * y
        for x, col in enumerate(columns):
            i = row + col
            out[base + 3 * x:base + 3 * x + 3] = src[i:i + 3]
    return out


def _bilinear(src, width, height, new_w, new_h):
    out = bytearray(3 * new_w * new_h)
    sx = (width - 1) / max(1, new_w - 1)
    sy = (height - 1) / max(1, new_h - 1)
    for y in range(new_h):
        fy = y * sy
        y0 = int(fy)
        y1 = min(y0 + 1, height - 1)
        wy = fy - y0
        for x in range(new_w):
            fx = x * sx
            x0 = int(fx)
            x1 = min(x0 + 1, width - 1)
            wx = fx - x0
            for c in range(3):
                a = src[3 * (y0 * width + x0) + c]
                b = src[3 * (y0 * width + x1) + c]
                d = src[3 * (y1 * width + x0) + c]
                e = src[3 * (y1 * width + x1) + c]
                top = a + (b - a) * wx
                bottom = d + (e - d) * wx
                out[3 * (y * new_w + x) + c] = int(top + (bottom - top) * wy + 0.5)
    return out


def main(args):
    try:
        incont, name, outcont = args["incont"], args["object"], args["outcont"]
        new_w = int(args.get("width", 64))
        mode = str(args.get("mode", "bilinear"))
    except KeyError as exc:
        return {"error": f"missing parameter {exc.args[0]!r} (FaaSLoad passes incont, object, outcont)"}
    except (TypeError, ValueError) as exc:
        return {"error": f"bad parameter: {exc}"}
    if new_w < 1 or mode not in ("nearest", "bilinear"):
        return {"error": f"bad parameters: width={new_w} mode={mode!r} (width >= 1, mode nearest|bilinear)"}
    storage = os.environ.get("FAASLOAD_STORAGE")
    if not storage:
        return {"error": "FAASLOAD_STORAGE is not set: the platform must hand the storage directory to actions"}
    try:
        t0 = time.perf_counter()
        with open(_path(storage, incont, name), "rb") as f:
            width, height, pixels = _parse_ppm(f.read())
        t1 = time.perf_counter()
        new_h = max(1, round(height * new_w / width))
        resize = _nearest if mode == "nearest" else _bilinear
        out = b"P6\n%d %d\n255\n" % (new_w, new_h) + bytes(resize(pixels, width, height, new_w, new_h))
        t2 = time.perf_counter()
        stem, _, ext = name.rpartition(".")
        activation = os.environ.get("__OW_ACTIVATION_ID") or str(os.getpid())
        target = _path(storage, outcont, f"{stem or ext}-image_resize-{activation}.{ext or 'jpg'}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(out)
        t3 = time.perf_counter()
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"outputsize": len(out),
            "times": {"extract": (t1 - t0) * 1e3, "transform": (t2 - t1) * 1e3, "load": (t3 - t2) * 1e3},
            "input": {"width": width, "height": height}, "output": {"width": new_w, "height": new_h}}

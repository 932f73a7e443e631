"""The action child: ``launcher.py WORKDIR MAIN [ANSWER_FD]`` (standard library only).

As OpenWhisk's python launcher: import ``main__`` from WORKDIR, acknowledge ``{"ok": true}``
on ANSWER_FD (default 3, as ActionLoop), then for each JSON line on stdin set ``__OW_<KEY>`` for every non-``value`` key,
call ``main(value)`` and write ``json.dumps(result)`` plus a newline on ANSWER_FD, after
flushing stdout and stderr. An exception is printed to stderr and answered
``{"error": str(exception)}`` (an application error).
"""

import json
import os
import sys
import traceback


def main() -> int:
    workdir, entry = sys.argv[1], sys.argv[2]
    answer_fd = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    sys.argv = [sys.argv[0]]
    activate = os.path.join(workdir, "virtualenv", "bin", "activate_this.py")
    if os.path.exists(activate):
        with open(activate) as stream:
            exec(compile(stream.read(), activate, "exec"), {"__file__": activate})
    sys.path.insert(0, workdir)
    out = os.fdopen(answer_fd, "w")
    try:
        import main__  # type: ignore[import-not-found]  # noqa: F401 (the action's code, written by /init)
        function = getattr(main__, entry)
    except Exception:  # the action's own error: to its log, then no acknowledgement
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    out.write('{"ok": true}\n')
    out.flush()
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        args = json.loads(line)
        for key, value in args.items():
            if key != "value":
                os.environ["__OW_" + key.upper()] = value if isinstance(value, str) else json.dumps(value)
        try:
            result = function(args.get("value") or {})
        except Exception as exc:  # the action's error becomes an application error
            traceback.print_exc()
            result = {"error": str(exc)}
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            text = json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError):
            text = json.dumps({"error": "The action did not return a dictionary or array."})
        out.write(text + "\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main())

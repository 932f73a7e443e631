"""localwhisk: a single-host OpenWhisk-compatible platform (``python -m localwhisk``).

See docs/localwhisk.md. Nothing runs at import.
"""

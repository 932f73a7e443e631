"""Injector mode: replay a directory of traces (one file per user-action)."""

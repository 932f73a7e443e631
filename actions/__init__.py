"""Example FaaSLoad actions, their wskdeploy manifest and the input generator (see docs/actions.md).

The action files (``image_resize.py``, ``audio_gain.py``, ``video_filter.py``,
``calibrated/*.py``) are single-file OpenWhisk Python actions: standard library only,
no import of this package.  ``python -m actions.inputs`` writes their inputs.
"""

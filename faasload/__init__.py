"""Code shared by FaaSLoad's daemons: configuration, clocks, logging, service launchers.

Nothing here runs at import time.
"""

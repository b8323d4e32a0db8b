"""Call recording, one subject per module.

- :mod:`.policy`: the pure decisions (which calls to open, when to start
  writing, whether to keep, which flags), from call events and ``[recording]``.
- :mod:`.writer`: the one thread that owns every open recording, driven only
  by the commands it defines; :mod:`.capture` is one recording's state in it.
- :mod:`.tap`: the live tap a listener reads a call's audio from.
- :mod:`agent.seat.recorder`: the observer that glues them to call events.
"""

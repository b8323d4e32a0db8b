"""Call recording, one subject per module.

- :mod:`.policy`: the pure decisions (which calls to open, when to start
  writing, whether to keep, which flags), from call events and ``[recording]``.
- :mod:`.writer`: the one thread that owns every open recording, driven only
  by the commands of :mod:`.commands`; :mod:`.capture` is one recording's
  state in it, :mod:`.batching` how its blocks are gathered into writes.
- :mod:`.tap`: the live tap a listener reads a call's audio from.
- :mod:`.sources`: which audio source a call's line records from.
- :mod:`.counters`: what recording counts (the metrics module implements it).
- :mod:`agent.seat.recorder`: the observer that glues them to call events.
"""

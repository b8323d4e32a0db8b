"""The supervisor console: log-in, call search, playback with an audit trail, statistics, wallboard.

:func:`agent.centre.app.make_console_app` builds the Starlette app that
``cti-agent console`` serves over the central database (or a seat's own).
"""

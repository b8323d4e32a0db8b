"""The supervisor console: log-in, call search, playback with an audit trail, statistics, wallboard.

:func:`agent.centre.app.make_console_app` builds the Starlette app that
``cti-agent console`` serves over the central database (or a seat's own).

Layout: ``context.py`` (settings and the frozen context every view takes),
``access.py`` (sessions and :func:`~agent.centre.access.requires`, where rights
are checked), ``views/`` (one module per subject), ``search.py`` and
``queries.py`` (the SQL), ``charts.py`` (SVG charts and the waveform),
``auth.py`` (passwords, users, signed sessions), ``listen.py`` (listen-in).
"""

"""The console's views, one module per subject (datasette's ``views/``).

Each view is ``async (ctx, request) -> Response``: :class:`agent.centre.context.ConsoleContext`
first, so a test calls it with a context of its own. Views behind a log-in are
wrapped in :func:`agent.centre.access.requires`; their SQL lives in
:mod:`agent.centre.search` and :mod:`agent.centre.queries`.
"""

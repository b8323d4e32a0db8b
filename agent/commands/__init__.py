"""Extra ``cti-agent`` commands, each a click command attached to the CLI group by :mod:`agent.cli`."""

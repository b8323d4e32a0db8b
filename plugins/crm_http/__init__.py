"""``crm_http``: look customers up in a CRM over HTTP, after the local customers table.

Off unless configured. With a ``[plugins.crm_http]`` table (see
:class:`plugins.crm_http.config.CrmHttpConfig`) the plugin returns a configured
:class:`plugins.crm_http.client.CrmHttp` from ``agent_configured``, which the agent
registers for its run; it answers ``lookup_customer`` when no earlier plugin did.
"""

from __future__ import annotations

import agent
from agent.config import Config, plugin_settings
from plugins.crm_http.client import CrmHttp
from plugins.crm_http.config import CrmHttpConfig

NAME = "crm_http"


@agent.hookimpl
def agent_configured(config: Config) -> CrmHttp | None:
    """A CRM client for this run, or None when ``[plugins.crm_http]`` is absent.

    :raises ConfigError: the table is invalid (names the key).
    """
    options = plugin_settings(config, NAME, CrmHttpConfig)
    if options is None:
        return None
    return CrmHttp(options, region=config.agent.region)


__all__ = ["CrmHttp", "CrmHttpConfig", "agent_configured"]

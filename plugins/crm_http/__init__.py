"""``crm_http``: look customers up in a CRM over HTTP, after the local customers table.

Off unless configured. With a ``[plugins.crm_http]`` table (see
:class:`plugins.crm_http.config.CrmHttpConfig`) the plugin returns a configured
:class:`plugins.crm_http.client.CrmHttp` from ``agent_configured``, which the agent
registers for its run; it answers ``lookup_customer`` when no earlier plugin did.
"""

from __future__ import annotations

from pydantic import ValidationError

import agent
from agent.config import Config
from agent.errors import ConfigError
from plugins.crm_http.client import CrmHttp
from plugins.crm_http.config import CrmHttpConfig

NAME = "crm_http"


@agent.hookimpl
def agent_configured(config: Config) -> CrmHttp | None:
    """A CRM client for this run, or None when ``[plugins.crm_http]`` is absent.

    :raises ConfigError: the table is invalid (names the key).
    """
    section = config.plugins.get(NAME)
    if section is None:
        return None
    try:
        options = CrmHttpConfig.model_validate(section)
    except ValidationError as exc:
        problems = "; ".join(
            f"plugins.{NAME}.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(problems) from None
    return CrmHttp(options, region=config.agent.region)


__all__ = ["CrmHttp", "CrmHttpConfig", "agent_configured"]

"""How oar-server reaches the nodes: the Connector interface and its implementations.

``connector_for(config)`` chooses one from ``OAR_CONNECTOR`` in oar.conf, once.
"""

from __future__ import annotations

from oar_appliance.errors import ConfigError
from oar_appliance.execution.base import READY_LINE, Connector, LaunchError, RunResult
from oar_appliance.execution.local import LocalConnector

__all__ = ["READY_LINE", "Connector", "LaunchError", "LocalConnector", "RunResult", "connector_for"]


def connector_for(config) -> Connector:
    """The connector named by ``OAR_CONNECTOR`` (``local`` or ``ssh``)."""
    name = str(config["OAR_CONNECTOR"]).strip().lower()
    if name == "local":
        return LocalConnector()
    if name == "ssh":
        raise ConfigError(f"{config.source('OAR_CONNECTOR')}: OAR_CONNECTOR=ssh (nodes reached"
                          " over ssh on port 6667) is not available yet; use OAR_CONNECTOR=local")
    raise ConfigError(f"{config.source('OAR_CONNECTOR')}: OAR_CONNECTOR must be 'local' or 'ssh',"
                      f" got {config['OAR_CONNECTOR']!r}")

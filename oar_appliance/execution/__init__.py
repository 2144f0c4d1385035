"""How oar-server reaches the nodes: the Connector interface and its implementations.

``connector_for(config)`` chooses one from ``OAR_CONNECTOR`` in oar.conf, once.
"""

from __future__ import annotations

from oar_appliance.errors import ConfigError
from oar_appliance.execution.base import READY_LINE, Connector, LaunchError, RunResult
from oar_appliance.execution.local import LocalConnector
from oar_appliance.execution.fanout import HOST, fanout_for
from oar_appliance.execution.ssh import SshConnector

__all__ = ["HOST", "READY_LINE", "Connector", "LaunchError", "LocalConnector", "RunResult", "SshConnector",
           "connector_for"]


def connector_for(config) -> Connector:
    """The connector named by ``OAR_CONNECTOR`` (``local`` or ``ssh``), with its fan-out
    (:func:`oar_appliance.execution.fanout.fanout_for`: TakTuk or ClusterShell)."""
    name = str(config["OAR_CONNECTOR"]).strip().lower()
    connector: Connector
    if name == "local":
        connector = LocalConnector()
    elif name == "ssh":
        connector = SshConnector.from_config(config)
    else:
        raise ConfigError(f"{config.source('OAR_CONNECTOR')}: OAR_CONNECTOR must be 'local' or 'ssh',"
                          f" got {config['OAR_CONNECTOR']!r}")
    connector.fanout = fanout_for(config, connector)
    return connector


"""gatewayd: activates sensor nodes with Exosite and hands them their credentials over MQTT."""

__version__ = "0.1.0"

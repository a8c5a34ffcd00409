"""One module per outside thing, each translating its library's errors into gatewayd's.

The broker (paho-mqtt), Exosite (activation and the vendor API, on one
requests-based HTTP client), the keystore (the file store and the keyring
seam), the state database (SQLite), systemd (notify, the journal). Modules
here import :mod:`gatewayd.core`, :mod:`gatewayd.config` and third-party
libraries; never the daemon, gatewayctl or the simulator.
"""

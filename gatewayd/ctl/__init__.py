"""gatewayctl: the operator's command line.

It reads the state and the keystore as the daemon left them, asks the running
daemon over its control socket and calls the vendor API. It imports any layer
below it (daemon, adapters, config, core); nothing imports it.
"""

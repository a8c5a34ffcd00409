"""The running daemon: the main loop, the action executor, intake of announces, status,
the control server, and the wiring of the parts from the configuration.

Modules here import the layers below (adapters, config, core); never gatewayctl or
the simulator.
"""

"""The pure core: what gatewayd decides, with no I/O, no threads and no clock of its own.

Every rule about a node is in :mod:`gatewayd.core.transitions`, the table and the
rules that pick its triggers; ``README.md`` beside this file walks through one
question with it.

The engine and its transition table, the node model, the events it takes and
the actions it gives, the replies to nodes, the MQTT topic and payload
contract, timers and backoff, rate limiting and the errors every layer
raises. Modules here import the standard library and each other, nothing
else: not the configuration, not an adapter, not a third-party library
(``make lint`` enforces it).
"""

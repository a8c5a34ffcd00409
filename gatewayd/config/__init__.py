"""The configuration: the TOML file read and checked, its sections, and what a reload
changes.

Modules here import the standard library and :mod:`gatewayd.core` (its errors),
nothing else.
"""

"""Local emulator of the Azure Key Vault certificates data plane (dev and test only, never deployed).

Start it with ``python -m emulator --vault kv-alpha`` or, from Python, with
:func:`emulator.testing.running_emulator`. See ``emulator/README.md``.
"""

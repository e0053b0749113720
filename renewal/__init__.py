"""The renewal domain: events, due policy, orchestrator, verification, sweep, replay and adapters."""

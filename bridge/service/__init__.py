"""The running bridge: one pipeline per PBX, the shared publisher, health and metrics."""

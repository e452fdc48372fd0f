"""Pure-torch implementations of every op: the executable specification (short, obvious, slow)."""

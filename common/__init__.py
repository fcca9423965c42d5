"""Helpers below every layer: file hashing, atomic writes and locks (``files``), config checking (``config``)."""

"""inspector: record, flag, diff and replay the HTTP(S) traffic of another program."""

__version__ = "0.1.0"

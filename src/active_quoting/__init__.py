"""active-quoting: a two-sided market maker for Polymarket's CLOB."""

__version__ = "0.1.0"

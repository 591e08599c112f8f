"""Bridges to other engines, each behind its own optional extra (imported only when used)."""

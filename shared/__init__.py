"""Lynchpin's shared package: events, envelope, store, bus, relay, settings and web helpers."""

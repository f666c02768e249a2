"""Comms: stakeholder notifications over real channels."""

"""Intake: alerts in, dedup and grouping, the incident lifecycle."""

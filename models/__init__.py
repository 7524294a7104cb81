"""Reader models that ship with qa-bot (data only)."""

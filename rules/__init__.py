"""Threshold rules engine: versioned YAML rules, kinds, alerts and back-testing."""

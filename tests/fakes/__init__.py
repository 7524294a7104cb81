"""Test doubles that stand where the network would be (a fake Slack Web API on loopback)."""

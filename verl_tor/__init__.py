"""ToR for veRL."""

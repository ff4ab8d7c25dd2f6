"""Real runner processes with one fault built in, for the reliability tests."""

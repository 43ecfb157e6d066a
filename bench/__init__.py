"""make bench: the figures of issue 6, each measured side by side with its baseline on loopback."""

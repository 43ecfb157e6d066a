"""make bench: the site's figures, each measured side by side with its baseline on loopback."""

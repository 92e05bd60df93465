"""overlay-tui's console: a Textual app over :mod:`core.service`. Never imports an SDK."""

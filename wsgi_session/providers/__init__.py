"""Session stores. One module per store; each registers under its own name."""

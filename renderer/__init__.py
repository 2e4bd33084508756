"""Avaluma renderer: lip-sync inference, the .hvia avatar format, compositing and encoding."""

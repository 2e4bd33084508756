"""Avaluma core: config, plugins, media types, errors, the gRPC server and sessions."""

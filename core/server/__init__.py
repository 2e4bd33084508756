"""The Avatar Server's front doors: the composition root (``app``), gRPC services, the HTTP API and authentication."""

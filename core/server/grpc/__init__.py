"""The gRPC edge: servicers, interceptors and the handler re-wrapping; the only server code that touches protobuf."""

"""Generated gRPC modules of the Avaluma session API (``python -m avaluma.proto.codegen`` writes them; do not edit)."""

"""Avaluma gRPC API. Sources in proto/avaluma/v1/*.proto; generated modules in avaluma.proto.v1."""

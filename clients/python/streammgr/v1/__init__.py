"""streammgr.v1: the daemon's API, generated at build time from
proto/streammgr/v1/streammgr.proto (streammgr_pb2, streammgr_pb2_grpc and
their .pyi stubs; never committed)."""

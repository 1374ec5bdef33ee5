"""Generated gRPC and protobuf code for the percept.v1 API (see protos/)."""

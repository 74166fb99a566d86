"""A real gRPC server (grpcio) with the standard health service, for the
agent's gRPC and H2PING check tests.

Usage: grpc_health_server.py PORT [CERT KEY]
Prints "ready" once serving on 127.0.0.1:PORT (TLS when CERT and KEY are
given). Then reads lines from stdin: "set SERVICE STATUS" (STATUS one of
SERVING, NOT_SERVING; SERVICE "-" for the whole server) answers "ok"; end of
input stops the server.
"""

import sys
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main():
    port = int(sys.argv[1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    addr = f"127.0.0.1:{port}"
    if len(sys.argv) >= 4:
        with open(sys.argv[2], "rb") as f:
            cert = f.read()
        with open(sys.argv[3], "rb") as f:
            key = f.read()
        server.add_secure_port(addr, grpc.ssl_server_credentials([(key, cert)]))
    else:
        server.add_insecure_port(addr)
    server.start()
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "set":
            service = "" if parts[1] == "-" else parts[1]
            value = health_pb2.HealthCheckResponse.ServingStatus.Value(parts[2])
            servicer.set(service, value)
            print("ok", flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()

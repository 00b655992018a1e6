#!/usr/bin/env python3
"""Ask a recserve server for recommendations over gRPC, from Python.

    python3 clients/python/recommend.py --addr 127.0.0.1:9090 --user user-00000 -n 5
    python3 clients/python/recommend.py --similar item-00000
    python3 clients/python/recommend.py --user u1 --event-item item-00042 --event-type purchase

The Python stubs are generated at start-up from proto/recserve/v1 into a temporary
directory, with grpc_tools.protoc (pip: grpcio-tools) when its protoc understands
proto3 `optional`, else with the system protoc and grpc_python_plugin (Debian:
protobuf-compiler, protobuf-compiler-grpc). See README.md.

The channel balances calls round-robin over every address the target resolves to
and retries calls that fail with UNAVAILABLE, like clients/go. Recommend and
SimilarItems only read; RecordEvents is safe to retry because every event carries an
id (generated here when --event-id is not given) and the server counts an id once.
"""

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROTOS = ["recserve/v1/recommend.proto", "recserve/v1/event.proto"]
GOOGLE_API = ["google/api/annotations.proto", "google/api/http.proto"]

# The same policy as clients/go: round robin, retries on UNAVAILABLE with backoff.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "recserve.v1.RecommendService"}, {"service": "recserve.v1.EventService"}],
        "retryPolicy": {
            "maxAttempts": 4,
            "initialBackoff": "0.05s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}


def _need_google_api():
    try:
        importlib.import_module("google.api.annotations_pb2")
        return False
    except ImportError:
        return True


def generate_stubs(proto_root, out_dir):
    """Generates *_pb2.py and *_pb2_grpc.py for the recserve protos into out_dir."""
    googleapis = os.path.join(proto_root, "third_party", "googleapis")
    includes = ["-I" + os.path.join(proto_root, "proto"), "-I" + googleapis]
    files = list(PROTOS)
    if _need_google_api():
        files += GOOGLE_API
    errors = []

    if importlib.util.find_spec("grpc_tools") is not None:
        from importlib import resources

        well_known = str(resources.files("grpc_tools") / "_proto")  # google/protobuf/*.proto
        cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I" + well_known] + includes + [
            "--python_out=" + out_dir, "--grpc_python_out=" + out_dir] + files
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode == 0:
            return "grpc_tools.protoc"
        errors.append("grpc_tools.protoc: " + res.stderr.strip().split("\n")[0])
    else:
        errors.append("grpc_tools is not installed")

    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if protoc and plugin:
        cmd = [protoc] + includes + ["--python_out=" + out_dir, "--grpc_out=" + out_dir,
                                     "--plugin=protoc-gen-grpc=" + plugin] + files
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode == 0:
            return "protoc + grpc_python_plugin"
        errors.append("protoc: " + res.stderr.strip())
    else:
        errors.append("no protoc and grpc_python_plugin on PATH")
    raise SystemExit("cannot generate the Python stubs:\n  " + "\n  ".join(errors) +
                     "\ninstall grpcio-tools (pip) or protobuf-compiler and protobuf-compiler-grpc (Debian)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", default="127.0.0.1:9090", help="gRPC target (e.g. dns:///recserve-headless:9090)")
    ap.add_argument("--user", help="user to recommend for (and the user of --event-item)")
    ap.add_argument("--similar", metavar="ITEM", help="items similar to ITEM instead")
    ap.add_argument("-n", type=int, default=10, help="number of items")
    ap.add_argument("--model", default="", help="model (default: the server's default)")
    ap.add_argument("--category", action="append", default=[], help="only items in this category (repeatable)")
    ap.add_argument("--event-item", help="record an event of --user on this item first")
    ap.add_argument("--event-type", default="purchase",
                    choices=["view", "click", "add_to_cart", "purchase", "rating", "impression"])
    ap.add_argument("--event-id", help="event id (default: a random one)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per call, retries included")
    ap.add_argument("--tls", action="store_true", help="connect with TLS (implied by --cacert and --cert)")
    ap.add_argument("--cacert", help="CA certificate (PEM) to verify the server with (default: system roots)")
    ap.add_argument("--cert", help="client certificate (PEM) for mTLS")
    ap.add_argument("--key", help="client key (PEM) of --cert")
    ap.add_argument("--proto-root", default=ROOT, help="repository root holding proto/ and third_party/")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if not args.user and not args.similar:
        ap.error("give --user or --similar")
    if args.event_item and not args.user:
        ap.error("--event-item needs --user")

    out_dir = tempfile.mkdtemp(prefix="recserve-py-")
    try:
        how = generate_stubs(args.proto_root, out_dir)
        if args.verbose:
            print("stubs generated with %s in %s" % (how, out_dir), file=sys.stderr)
        sys.path.insert(0, out_dir)
        return run(args)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def run(args):
    import grpc
    from google.protobuf import json_format
    from recserve.v1 import event_pb2, event_pb2_grpc, recommend_pb2, recommend_pb2_grpc

    options = [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
    ]

    def show(msg):
        print(json_format.MessageToJson(msg, preserving_proto_field_name=True))

    # Credentials come from the environment (not the command line), and need TLS.
    metadata = []
    if os.environ.get("RECSERVE_API_KEY"):
        metadata.append(("x-api-key", os.environ["RECSERVE_API_KEY"]))
    if os.environ.get("RECSERVE_TOKEN"):
        metadata.append(("authorization", "Bearer " + os.environ["RECSERVE_TOKEN"]))

    def read(path):
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    if args.tls or args.cacert or args.cert:
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(args.cacert), private_key=read(args.key), certificate_chain=read(args.cert))
        channel = grpc.secure_channel(args.addr, creds, options=options)
    elif metadata:
        raise SystemExit("RECSERVE_API_KEY and RECSERVE_TOKEN are only sent over TLS: add --tls or --cacert")
    else:
        channel = grpc.insecure_channel(args.addr, options=options)
    call = {"timeout": args.timeout, "metadata": metadata or None}

    with channel:
        try:
            if args.event_item:
                type_name = "EVENT_TYPE_" + args.event_type.upper()
                ev = event_pb2.Event(
                    event_id=args.event_id or uuid.uuid4().hex,
                    user_id=args.user,
                    item_id=args.event_item,
                    type=event_pb2.EventType.Value(type_name),
                )
                resp = event_pb2_grpc.EventServiceStub(channel).RecordEvents(
                    event_pb2.RecordEventsRequest(events=[ev]), **call)
                show(resp)

            stub = recommend_pb2_grpc.RecommendServiceStub(channel)
            flt = recommend_pb2.Filter(include_categories=args.category) if args.category else None
            if args.similar:
                resp = stub.SimilarItems(recommend_pb2.SimilarItemsRequest(
                    model=args.model, item_id=args.similar, n=args.n, filter=flt), **call)
            else:
                resp = stub.Recommend(recommend_pb2.RecommendRequest(
                    model=args.model, user_id=args.user, n=args.n, filter=flt), **call)
            show(resp)
        except grpc.RpcError as e:
            print("recserve: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

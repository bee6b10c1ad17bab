#!/usr/bin/python3
"""Example Python client of loraserve (proto/loraserve.proto).

Needs Debian's python3-grpcio and python3-grpc-tools (apt-get install
python3-grpcio python3-grpc-tools); run it with the system interpreter,
/usr/bin/python3. The gRPC stubs are generated at run time, into a temporary
directory, from the repository's proto/loraserve.proto.

    /usr/bin/python3 clients/python/loraserve_client.py --addr 127.0.0.1:50051 \
        --adapter a0 --prompt-ids 1,2,3 --max-new-tokens 16
    /usr/bin/python3 clients/python/loraserve_client.py --chat "Say hello" --system "Be terse."

Calls that name an adapter carry it as `x-lora-adapter` metadata too, for
proxies that route each adapter to the replica holding it.
"""

import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join("proto", "loraserve.proto")


def load_stubs(out_dir):
    """Runs protoc on proto/loraserve.proto; returns (messages, services) modules."""
    args = [
        "grpc_tools.protoc",
        "--proto_path=" + REPO_ROOT,
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
        os.path.join(REPO_ROOT, PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + PROTO)
    # protoc writes <out>/proto/loraserve_pb2.py, importing "proto.loraserve_pb2".
    open(os.path.join(out_dir, "proto", "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)
    return (importlib.import_module("proto.loraserve_pb2"),
            importlib.import_module("proto.loraserve_pb2_grpc"))


def adapter_metadata(adapter_id):
    """`x-lora-adapter` for calls that name an adapter; none for the base model."""
    return (("x-lora-adapter", adapter_id),) if adapter_id else ()


def id_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--adapter", default="", help="adapter id; empty = base model")
    parser.add_argument("--load-path", help="LoadAdapter this path (under --adapter-root) first")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt-ids", type=id_list, help="e.g. 1,2,3")
    prompt.add_argument("--chat", metavar="TEXT",
                        help="a user message, rendered by the model's chat template")
    parser.add_argument("--system", default="", help="with --chat: a system message first")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="loraserve-stubs-") as gen_dir:
        pb, pb_grpc = load_stubs(gen_dir)
        with grpc.insecure_channel(args.addr) as channel:
            stub = pb_grpc.LoraServeStub(channel)
            try:
                if args.load_path:
                    info = stub.LoadAdapter(
                        pb.LoadAdapterRequest(adapter_id=args.adapter, path=args.load_path),
                        timeout=args.timeout_s, metadata=adapter_metadata(args.adapter))
                    print("loaded %s: rank %d, %d bytes" % (info.adapter_id, info.rank, info.bytes))

                request = pb.GenerateRequest(
                    adapter_id=args.adapter,
                    sampling=pb.SamplingParams(max_new_tokens=args.max_new_tokens,
                                               temperature=args.temperature, seed=args.seed))
                if args.chat is not None:
                    if args.system:
                        request.messages.add(role="system", content=args.system)
                    request.messages.add(role="user", content=args.chat)
                else:
                    request.prompt_token_ids.extend(args.prompt_ids)
                tokens = []
                for response in stub.Generate(request, timeout=args.timeout_s,
                                              metadata=adapter_metadata(args.adapter)):
                    if args.chat is not None:
                        print(response.text, end="", flush=True)  # text in, text out
                    else:
                        for token in response.token_ids:
                            print(token, end=" ", flush=True)
                    tokens.extend(response.token_ids)
                    if response.final:
                        reason = pb.FinishReason.Name(response.finish_reason)
                        print("\nfinish_reason: %s  completion_tokens: %d  ttft_ms: %.2f  "
                              "total_ms: %.2f  request_id: %s" %
                              (reason, response.usage.completion_tokens, response.timings.ttft_ms,
                               response.timings.total_ms, response.request_id))
            except grpc.RpcError as err:
                print("error: %s: %s" % (err.code().name, err.details()), file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

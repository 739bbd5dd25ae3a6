#!/usr/bin/env python3
"""Reads one event from the course exchange with pika and prints it as JSON.

Proves the published messages decode outside Rust: the classes come from proto/ through
grpcio-tools at run time. Declares and binds its own queue, prints "ready", then waits for one
message and prints the decoded EventEnvelope as JSON (protobuf JSON mapping) on one line.

  consume_event.py --url amqp://guest:guest@127.0.0.1:5672/%2f --exchange course.events --queue q
"""
import argparse
import importlib
import pathlib
import sys
import tempfile
import time

import pika
from google.protobuf import json_format
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent


def generated_events_module():
    out = pathlib.Path(tempfile.mkdtemp(prefix="course-proto-"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    code = protoc.main([
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{include}",
        f"--python_out={out}",
        "course/v1/events.proto",
    ])
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, str(out))
    return importlib.import_module("course.v1.events_pb2")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    events = generated_events_module()
    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.exchange_declare(args.exchange, exchange_type="topic", durable=True)
    channel.queue_declare(args.queue, exclusive=True, auto_delete=True)
    channel.queue_bind(args.queue, args.exchange, routing_key="course.v1.#")
    print("ready", flush=True)

    deadline = time.monotonic() + args.timeout
    for method, properties, body in channel.consume(args.queue, inactivity_timeout=0.5):
        if method is None:
            if time.monotonic() > deadline:
                sys.exit("no message arrived")
            continue
        assert properties.content_type == "application/x-protobuf", properties.content_type
        envelope = events.EventEnvelope()
        envelope.ParseFromString(body)
        assert properties.message_id == envelope.event_id
        channel.basic_ack(method.delivery_tag)
        print(json_format.MessageToJson(envelope, indent=None), flush=True)
        break
    channel.cancel()
    connection.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Deletes the RabbitMQ queues and exchanges that test runs create (names starting with a test
prefix), so that repeated runs on one machine do not pile up quorum queues.

  clean-test-broker.py QUEUES_FILE EXCHANGES_FILE   (one name per line, from rabbitmqctl)
"""
import os
import re
import sys

import pika

# A test name starts with a test prefix and has a component that is a 32-hex-digit UUID or a
# number (a pid, for the scripted meshes), so the service defaults ("query-redis.course-events",
# "course.events", ...) never match.
PREFIX = re.compile(r"^(test|e2e|query-mongo|snip|sdk[a-z_]*|bench[a-z]*|walkthrough)[._]")
UNIQUE = re.compile(r"(^|[._])([0-9a-f]{32}|\d+)([._]|$)")


def is_test_name(name):
    return bool(PREFIX.match(name) and UNIQUE.search(name))


def names(path):
    with open(path) as handle:
        return [line.strip() for line in handle if is_test_name(line.strip())]


def main():
    queues, exchanges = names(sys.argv[1]), names(sys.argv[2])
    url = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for queue in queues:
        channel.queue_delete(queue)
    for exchange in exchanges:
        channel.exchange_delete(exchange)
    connection.close()
    print(f"removed {len(queues)} test queues and {len(exchanges)} test exchanges")


if __name__ == "__main__":
    main()

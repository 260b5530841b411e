"""A mesh-manager bus client written from docs/bus.md alone, with nats-py.

Usage: publish_create_mesh.py NATS_URL ROOT TENANT MESH

It reads the partition count recorded on the command stream, computes the partition of
TENANT/MESH with its own FNV-1a, publishes a hand-written CreateMesh envelope on the command
subject twice with the same Nats-Msg-Id, and then reads back what the command stream holds
(without consuming it). It prints one JSON object on stdout for the Rust test that drives it
(bus/tests/foreign_client.rs), which decodes the stored message with the real mesh-bus code.
Any failure exits non-zero with the reason on stderr.
"""

import asyncio
import datetime
import json
import os
import re
import sys
import time
import uuid

import nats

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x00000100000001B3
MASK_64 = 0xFFFFFFFFFFFFFFFF
PARTITIONS_METADATA_KEY = "mesh-manager.partitions"


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bit: for each byte, xor it in, then multiply by the prime modulo 2^64."""
    h = FNV_OFFSET_BASIS
    for byte in data:
        h ^= byte
        h = (h * FNV_PRIME) & MASK_64
    return h


def partition_of(tenant: str, mesh: str, partitions: int) -> int:
    return fnv1a64(f"{tenant}/{mesh}".encode("utf-8")) % partitions


def uuid7() -> str:
    """A UUIDv7: 48 bits of Unix milliseconds, version 7, variant 10, random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68) << 64  # 12 random bits
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def stream_name(root: str, suffix: str) -> str:
    return root.upper().replace("-", "_") + "_" + suffix


def recorded_partitions(config) -> int:
    """The partition count: stream metadata (nats-server >= 2.10), else the description."""
    metadata = getattr(config, "metadata", None) or {}
    if PARTITIONS_METADATA_KEY in metadata:
        return int(metadata[PARTITIONS_METADATA_KEY])
    found = re.search(r"partitions=(\d+)", config.description or "")
    if not found:
        raise SystemExit(f"stream {config.name} records no partition count")
    return int(found.group(1))


async def main(url: str, root: str, tenant: str, mesh: str) -> None:
    # The reference vectors of FNV-1a 64, so a broken port fails here and not as a misroute.
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8

    nc = await nats.connect(url, name="foreign-client-test", connect_timeout=5)
    try:
        js = nc.jetstream()
        jsm = nc.jsm()
        commands = stream_name(root, "CMD")
        info = await jsm.stream_info(commands)
        partitions = recorded_partitions(info.config)
        partition = partition_of(tenant, mesh, partitions)
        subject = f"{root}.cmd.{partition}.{tenant}.{mesh}"

        message_id = uuid7()
        now = datetime.datetime.now(datetime.timezone.utc)
        envelope = {
            "id": message_id,
            "kind": "CreateMesh",
            "version": 1,
            "occurred_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "tenant": tenant,
            "mesh": mesh,
            "principal": "token:python-ci",
            "correlation_id": message_id,
            "causation_id": None,
            "expected_generation": None,
            "payload": {
                "title": "Payments from Python",
                "region": "eu-west-1",
                "version": "1.30.3",
                "mode": "primary-remote",
                "clusters": [
                    {"name": "c1", "role": "master", "network": "net-a"},
                    {"name": "c2", "role": "remote", "network": "net-b"},
                ],
                "config": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
            },
        }
        body = json.dumps(envelope).encode("utf-8")
        traceparent = "00-" + os.urandom(16).hex() + "-" + os.urandom(8).hex() + "-01"
        headers = {"Nats-Msg-Id": message_id, "traceparent": traceparent}

        # A retried publish: same bytes, same Nats-Msg-Id.
        acks = []
        for _ in range(2):
            ack = await js.publish(subject, body, headers=headers, stream=commands)
            acks.append({"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate)})

        # Read what the stream holds by sequence; a direct get consumes nothing, and no
        # consumer is created on the work-queue stream (that is the workers' job).
        info = await jsm.stream_info(commands)
        stored = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                raw = await jsm.get_msg(commands, seq)
                stored.append(
                    {
                        "seq": raw.seq,
                        "subject": raw.subject,
                        "headers": dict(raw.headers or {}),
                        "data": raw.data.decode("utf-8"),
                    }
                )

        print(
            json.dumps(
                {
                    "stream": commands,
                    "partitions": partitions,
                    "partition": partition,
                    "subject": subject,
                    "id": message_id,
                    "traceparent": traceparent,
                    "acks": acks,
                    "stored_count": info.state.messages,
                    "stored": stored,
                }
            )
        )
    finally:
        await nc.close()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    asyncio.run(main(*sys.argv[1:]))

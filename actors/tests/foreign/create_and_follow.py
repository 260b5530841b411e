"""Create a mesh and follow it to the end, as a client written from docs/bus.md alone (nats-py).

Usage: create_and_follow.py [--timeout SECONDS] NATS_URL ROOT TENANT MESH CLUSTER [CLUSTER ...]

What it does, each step as docs/bus.md describes it:

1. reads the partition count P from the command stream <ROOT>_CMD (metadata, else description);
2. starts an ordered JetStream consumer on <ROOT>_EVT filtered to <root>.evt.<tenant>.<mesh>.>,
   delivering new messages only, *before* publishing, so no event of the command is missed;
3. publishes a hand-written CreateMesh envelope (multi-primary, every CLUSTER a master on its
   own network, Istio 1.30.3) on <root>.cmd.<FNV-1a 64 of "tenant/mesh" mod P>.<tenant>.<mesh>
   with Nats-Msg-Id set to the envelope id;
4. prints `event <Kind>` for every event of the mesh as it arrives (plus a few payload fields)
   and checks each against the contract (subject, Nats-Msg-Id, correlation, principal);
5. stops at the FlowFinished of the flow the command started.

Exit status: 0 when that flow succeeded (the mesh is Running); 1 when it did not, when the
command was rejected or dead-lettered, or when an event breaks the contract; 2 on timeout.
Diagnostics go to stderr; stdout carries only `published ...`, `event ...` and `result ...`
lines for the Rust test that drives it (actors/tests/foreign_client_lifecycle.rs).
"""

import argparse
import asyncio
import datetime
import json
import os
import re
import sys
import time
import uuid

import nats
from nats.js.api import DeliverPolicy

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x00000100000001B3
MASK_64 = 0xFFFFFFFFFFFFFFFF
PARTITIONS_METADATA_KEY = "mesh-manager.partitions"
PRINCIPAL = "token:python-follow"

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2


class ContractViolation(Exception):
    """An event that does not look like docs/bus.md says it should."""


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


def create_mesh(tenant: str, mesh: str, clusters: list) -> dict:
    message_id = uuid7()
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "id": message_id,
        "kind": "CreateMesh",
        "version": 1,
        "occurred_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "tenant": tenant,
        "mesh": mesh,
        "principal": PRINCIPAL,
        "correlation_id": message_id,
        "causation_id": None,
        "expected_generation": None,
        "payload": {
            "title": f"{mesh} from Python",
            "region": "sim",
            "version": "1.30.3",
            "mode": "multi-primary",
            "clusters": [
                {"name": name, "role": "master", "network": f"net-{name}"} for name in clusters
            ],
            "config": {},
        },
    }


def check_event(msg, event: dict, root: str, tenant: str, mesh: str, command: dict) -> None:
    """The promises docs/bus.md makes about every event, and about the events of a command."""
    for field in ("id", "kind", "version", "occurred_at", "tenant", "mesh", "principal",
                  "correlation_id", "payload"):
        if field not in event:
            raise ContractViolation(f"event without {field!r}: {event}")
    expected_subject = f"{root}.evt.{tenant}.{mesh}.{event['kind']}"
    if msg.subject != expected_subject:
        raise ContractViolation(f"{event['kind']} on {msg.subject}, expected {expected_subject}")
    if event["tenant"] != tenant or event["mesh"] != mesh:
        raise ContractViolation(f"{event['kind']} of {event['tenant']}/{event['mesh']}")
    if event["version"] != 1:
        raise ContractViolation(f"{event['kind']} at version {event['version']}")
    msg_id = (msg.headers or {}).get("Nats-Msg-Id")
    if msg_id != event["id"]:
        raise ContractViolation(f"{event['kind']} {event['id']} has Nats-Msg-Id {msg_id}")
    if event.get("expected_generation") is not None:
        raise ContractViolation(f"{event['kind']} has an expected_generation")
    if event["correlation_id"] == command["correlation_id"] and event["kind"] != "MessageDeadLettered":
        if event["principal"] != command["principal"]:
            raise ContractViolation(
                f"{event['kind']} has principal {event['principal']!r}, "
                f"not the command's {command['principal']!r}"
            )


def describe(event: dict) -> str:
    """`event <Kind>` and the payload fields worth a glance."""
    payload = event.get("payload") or {}
    keys = ("command", "reason", "flow", "flow_id", "task", "cluster", "outcome", "detail",
            "generation", "mode")
    shown = " ".join(f"{k}={payload[k]}" for k in keys if k in payload)
    return f"event {event['kind']} {shown}".rstrip()


async def follow(args) -> int:
    # The reference vectors of FNV-1a 64, so a broken port fails here and not as a misroute.
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8

    nc = await nats.connect(args.url, name="foreign-follow-test", connect_timeout=5)
    try:
        js = nc.jetstream()
        jsm = nc.jsm()
        commands = stream_name(args.root, "CMD")
        events = stream_name(args.root, "EVT")
        info = await jsm.stream_info(commands)
        partitions = recorded_partitions(info.config)
        subject = f"{args.root}.cmd.{partition_of(args.tenant, args.mesh, partitions)}.{args.tenant}.{args.mesh}"

        # Follow first, publish second: an ordered consumer delivering only what comes next.
        subscription = await js.subscribe(
            f"{args.root}.evt.{args.tenant}.{args.mesh}.>",
            stream=events,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )

        command = create_mesh(args.tenant, args.mesh, args.clusters)
        headers = {
            "Nats-Msg-Id": command["id"],
            "traceparent": "00-" + os.urandom(16).hex() + "-" + os.urandom(8).hex() + "-01",
        }
        ack = await js.publish(subject, json.dumps(command).encode("utf-8"), headers=headers,
                               stream=commands)
        print(f"published CreateMesh {command['id']} on {subject} seq={ack.seq}", flush=True)

        deadline = time.monotonic() + args.timeout
        flow_id = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                print("result timeout", flush=True)
                return EXIT_TIMEOUT
            try:
                msg = await subscription.next_msg(timeout=min(remaining, 5.0))
            except nats.errors.TimeoutError:
                continue
            event = json.loads(msg.data.decode("utf-8"))
            print(describe(event), flush=True)
            check_event(msg, event, args.root, args.tenant, args.mesh, command)
            if event["correlation_id"] != command["correlation_id"]:
                continue  # another command's; not ours to judge
            kind, payload = event["kind"], event["payload"]
            if kind in ("CommandRejected", "MessageDeadLettered"):
                print(f"result {kind}: {payload.get('reason')}", flush=True)
                return EXIT_FAILED
            if kind == "FlowStarted" and flow_id is None:
                flow_id = payload["flow_id"]
            if kind == "FlowFinished" and payload["flow_id"] == flow_id:
                outcome = payload["outcome"]
                print(f"result {outcome} {payload.get('detail', '')}".rstrip(), flush=True)
                return EXIT_SUCCEEDED if outcome == "succeeded" else EXIT_FAILED
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait in all")
    parser.add_argument("url")
    parser.add_argument("root")
    parser.add_argument("tenant")
    parser.add_argument("mesh")
    parser.add_argument("clusters", nargs="+")
    args = parser.parse_args()
    try:
        return asyncio.run(follow(args))
    except ContractViolation as violation:
        print(f"result contract violation: {violation}", flush=True)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

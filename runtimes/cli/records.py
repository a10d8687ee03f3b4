"""``edgesal records inspect|extract``: read .salrec saliency records without the model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgesal.runtimes.errors import DeviceError

RECORDS_HELP = """\
Read .salrec saliency records (written by `edgesal run --records`) without the model.
"""


def inspect_summary(path: str) -> dict:
    """Counts and facts of a records file: what ``records inspect`` prints."""
    from edgesal.runtimes.records import RecordReader

    reader = RecordReader(path)
    headers, frames, maps, events, unfaithful, checked = [], 0, 0, [], 0, 0
    methods: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for record in reader:
        if record.kind == "header":
            headers.append(record.meta)
        elif record.kind == "event":
            events.append(record.meta)
        elif record.kind == "frame":
            frames += 1
            maps += "map" in record.meta
            if "map" in record.meta:
                kind = str(record.meta["map"].get("kind", "image"))
                kinds[kind] = kinds.get(kind, 0) + 1
            method = record.meta.get("method") or "(none)"
            methods[method] = methods.get(method, 0) + 1
            check = record.meta.get("selfcheck")
            checked += check is not None
            unfaithful += bool(check) and not check["faithful"]
    return {
        "file": str(path),
        "streams": len(headers),
        "headers": headers,
        "frames": frames,
        "maps": maps,
        "map_kinds": kinds,
        "methods": methods,
        "selfchecks": checked,
        "unfaithful": unfaithful,
        "events": events,
        "truncated_bytes": reader.truncated_bytes,
    }


def cmd_records_inspect(args: argparse.Namespace) -> int:
    """``records inspect FILE``: :func:`inspect_summary` as text or JSON; 2 on a bad file."""
    from edgesal.runtimes.records import RecordReader

    try:
        info = inspect_summary(args.file)
        frames = (
            [f.meta for f in RecordReader(args.file).frames(decode=False)] if args.frames else []
        )
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**info, "frame_list": frames} if args.frames else info, indent=2))
        return 0
    print(
        f"{info['file']}: salrec, {info['streams']} stream(s), {info['frames']} frames, "
        f"{info['maps']} maps"
    )
    for h in info["headers"]:
        models = ", ".join(
            f"{m['method']} ({Path(m['model']).name}, sha256 {m['sha256'][:12]})"
            for m in h.get("models", [])
        )
        print(
            f"  stream {h.get('created', '?')} source={h.get('source')} v{h['version']}: {models}"
        )
    print(f"  methods: {info['methods']}")
    if set(info["map_kinds"]) - {"image"}:
        print(f"  map kinds: {info['map_kinds']}")
    print(f"  self-checks: {info['selfchecks']} ({info['unfaithful']} unfaithful)")
    print(f"  governor events: {len(info['events'])}")
    for e in info["events"]:
        print(
            f"    frame {e['frame']}: level {e['from_level']}->{e['to_level']} {e['action']} "
            f"({e['reason']})"
        )
    if info["truncated_bytes"]:
        print(
            f"  torn tail: {info['truncated_bytes']} bytes after the last complete record "
            "(an interrupted write; every complete frame above is intact)"
        )
    for f in frames:
        check = f.get("selfcheck")
        flag = "" if check is None else (" faithful" if check["faithful"] else " UNFAITHFUL")
        score = "-" if f.get("score") is None else f"{f['score']:.3f}"
        print(
            f"  #{f['frame']:6d} {f.get('label')!s:20} {score} {f.get('method')} "
            f"map={'yes' if 'map' in f else 'no'}{flag}"
        )
    return 0


def cmd_records_extract(args: argparse.Namespace) -> int:
    """``records extract FILE OUT``: every stored map as 16-bit PNG or float32 .npy."""
    import cv2

    from edgesal.runtimes.records import RecordReader

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        for frame in RecordReader(args.file).frames():
            if frame.saliency is None:
                continue
            name = out / f"frame{frame.meta['frame']:06d}.{args.format}"
            if args.format == "npy":
                np.save(name, frame.saliency)
            else:
                cv2.imwrite(str(name), np.clip(frame.saliency * 65535, 0, 65535).astype(np.uint16))
            count += 1
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{count} maps written to {out}")
    return 0

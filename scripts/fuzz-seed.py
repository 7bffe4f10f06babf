#!/usr/bin/env python3
"""Seeds each fuzz target's corpus from the golden fixtures.

A seed is the framed input the inbound targets read: the content type, a
newline, the URL's query, a newline, then the body."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else root / "fuzz" / "corpus")


def body_bytes(body):
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def framed(fixture):
    content_type = fixture.get("content_type") or ""
    if not content_type:
        content_type = "application/json" if not isinstance(fixture["body"], str) else ""
    url = fixture.get("url") or ""
    query = url.split("?", 1)[1] if "?" in url else ""
    return content_type.encode() + b"\n" + query.encode() + b"\n" + body_bytes(fixture["body"])


def write(target, name, data):
    directory = out / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


adapters = {
    "client-channel": "client_channel_inbound",
    "slack": "slack_inbound",
    "teams": "teams_inbound",
    "sms": "sms_inbound",
    "webex": "webex_inbound",
    "email": "email_inbound",
}
for adapter, target in adapters.items():
    for path in sorted((root / "plugins" / adapter / "tests" / "fixtures" / "inbound").glob("*.json")):
        fixture = json.loads(path.read_text())
        data = framed(fixture)
        if adapter == "webex" and fixture.get("responses"):
            data += b"\0" + body_bytes(fixture["responses"][0].get("body", {}))
        write(target, path.stem, data)
    for path in sorted((root / "plugins" / adapter / "tests" / "fixtures" / "outbound").glob("*.json")):
        fixture = json.loads(path.read_text())
        message = fixture.get("message")
        if message is not None:
            write("api_body", f"{adapter}-{path.stem}", json.dumps(message).encode())
        step = {"step": "done", "output": {"kind": "messages", "messages": [message]}} if message else None
        if step:
            write("abi_answers", f"{adapter}-{path.stem}", json.dumps(step).encode())
# Platform webhooks: a leading byte picks the connector (mod 4: Multicloud, Cloud, Pega DMS, eGain).
for pick, crate, folder in [(b"\x00", "genesys-3pm", "multicloud"), (b"\x01", "genesys-cloud", "open_messaging"), (b"\x02", "pega-dms", ""), (b"\x03", "egain", "")]:
    for path in sorted((root / "plugins" / crate / "tests" / "fixtures" / folder).glob("*.json")):
        write("upstream_inbound", f"{folder or crate}-{path.stem}", pick + path.read_bytes())
# Web chat frames (content type, query, then the body), as the widget sends them.
for name, frame in [
    ("text", {"client_id": "m-1", "content": {"type": "text", "text": "Hello"}}),
    ("postback", {"client_id": "m-2", "content": {"type": "postback", "payload": "track", "text": "Track"}}),
    ("file", {"client_id": "m-3", "content": {"type": "attachments", "attachments": [
        {"url": "data:text/plain;base64,aGk=", "filename": "a.txt", "content_type": "text/plain", "size": 2}]}}),
    ("read", {"client_id": "r-1", "content": {"type": "receipt", "message_id": "x", "status": "Read"}}),
]:
    write("webchat_inbound", name, b"application/json\n\n" + json.dumps(frame).encode())
write("config", "example", (root / "examples" / "patchbay.toml").read_bytes())
print(f"seeded {out}")

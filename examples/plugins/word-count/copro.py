#!/usr/bin/env python3
"""A complete claude-conduit coprocessor plugin (protocol 1, docs/PLUGINS.md).

Contributes an MCP tool `count_words` (the model calls it `mcp__word-count__count_words`) and a
PreToolUse hook that denies Bash commands containing a configured string.

Protocol: JSON lines on stdin/stdout. We write a hello first; then the host sends requests
`{"id", "method", "params"}` and we answer `{"id", "result"}` or `{"id", "error"}`. Requests
may overlap; this one answers them in order. Logs go to stderr (the host keeps its tail).
"""
import json
import sys

config = {}


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def hook(params):
    if params["event"] != "PreToolUse":
        return None
    data = params["input"]
    command = data.get("tool_input", {}).get("command", "")
    for word in config.get("blocked", []):
        if data.get("tool_name") == "Bash" and word in command:
            return {"decision": "deny", "reason": f"`{word}` is blocked by word-count's config"}
    return None  # no opinion


def tool(params):
    if params["name"] != "count_words":
        raise ValueError(f"no tool {params['name']}")
    text = params["arguments"].get("text", "")
    n = len(text.split())
    return {"content": [{"type": "text", "text": f"{n} words"}], "isError": False}


def main():
    global config
    send({"hello": {
        "protocol": 1,
        "hooks": ["PreToolUse"],
        "tools": [{
            "name": "count_words",
            "description": "Count the words of a text",
            "input_schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        }],
    }})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        method = msg.get("method")
        if method == "shutdown":
            break
        try:
            if method == "initialize":
                config = msg["params"].get("config") or {}
                result = {}
            elif method == "hook":
                result = hook(msg["params"])
            elif method == "tool":
                result = tool(msg["params"])
            else:
                raise ValueError(f"unknown method {method}")
            send({"id": msg["id"], "result": result})
        except Exception as e:  # an error answers this request only
            print(f"word-count: {e}", file=sys.stderr)
            send({"id": msg["id"], "error": str(e)})


if __name__ == "__main__":
    main()

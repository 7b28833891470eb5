"""``--progress auto|tty|plain|json``: the live bar under a real pseudo-terminal, plain
lines without a terminal escape, and JSON parsed line by line."""

import io
import json
import os
import pty
import re
import subprocess
import sys

import pytest

from contentstore import Store
from contentstore.progress import JsonOutput, PlainOutput, ProgressEvent
from contentstore.testing import push_test_image

ESCAPE = "\x1b["
BAR = re.compile(r"\[=+>\s*\] \d")


def command(root, *args):
    return [sys.executable, "-m", "contentstore", "--root", str(root), *args]


def run(root, *args, expect=0):
    proc = subprocess.run(command(root, *args), capture_output=True, text=True)
    assert proc.returncode == expect, (proc.stdout, proc.stderr)
    return proc


def run_in_terminal(root, *args) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; what it showed there."""
    main, terminal = pty.openpty()
    try:
        process = subprocess.Popen(command(root, *args), stdin=subprocess.DEVNULL, stdout=terminal,
                                   stderr=terminal)
    finally:
        os.close(terminal)
    output = bytearray()
    try:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(main)
    assert process.wait(60) == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def json_lines(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "nothing on stderr"
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_json_output_and_plain_output():
    stream, messages = io.StringIO(), io.StringIO()
    out = JsonOutput(stream, messages=messages)
    out(ProgressEvent(None, "1.0: Pulling from team/app"))
    out(ProgressEvent("0123456789ab", "Downloading", 512, 1024))
    out(ProgressEvent(None, "Status: Downloaded newer image for example.com/team/app:1.0"))
    out.result(reference="example.com/team/app:1.0", digest="sha256:" + "a" * 64)
    assert json_lines(stream.getvalue()) == [
        {"id": None, "status": "1.0: Pulling from team/app", "current": None, "total": None},
        {"id": "0123456789ab", "status": "Downloading", "current": 512, "total": 1024},
        {"id": None, "status": "Status: Downloaded newer image for example.com/team/app:1.0", "current": None,
         "total": None},
        {"result": "success", "status": "Downloaded newer image for example.com/team/app:1.0",
         "reference": "example.com/team/app:1.0", "digest": "sha256:" + "a" * 64},
    ]
    assert messages.getvalue().splitlines() == ["1.0: Pulling from team/app",
                                                "Status: Downloaded newer image for example.com/team/app:1.0"]
    plain = io.StringIO()
    PlainOutput(plain)(ProgressEvent("0123456789ab", "Downloading", 512, 1024))
    assert plain.getvalue() == "0123456789ab: Downloading\n"


@pytest.mark.needs("docker-registry", "skopeo")
def test_json_progress_on_stderr_and_the_usual_lines_on_stdout(registry, tmp_path):
    ref = push_test_image(registry, "progress/json:1", {"a.txt": "a" * 5000})
    root = tmp_path / "store"
    proc = run(root, "--progress", "json", "pull", ref)
    events = json_lines(proc.stderr)
    *progress, result = events
    digest = str(Store(root).image(ref).digest)
    assert result == {"result": "success", "status": f"Downloaded newer image for {ref}", "reference": ref,
                      "digest": digest}
    assert all(set(event) == {"id", "status", "current", "total"} for event in progress)
    layers = [event for event in progress if event["id"] is not None]
    downloading = [event for event in layers if event["status"] == "Downloading"]
    assert downloading and all(isinstance(e["current"], int) and e["total"] >= e["current"] for e in downloading)
    assert downloading[-1]["current"] == downloading[-1]["total"]
    assert {"Pulling fs layer", "Download complete", "Pull complete"} <= {event["status"] for event in layers}
    assert {"id": None, "status": f"Digest: {digest}", "current": None, "total": None} in progress
    # stdout: the message lines and the reference, as without json; no layer lines.
    out = proc.stdout.splitlines()
    assert out[-1] == ref and f"Digest: {digest}" in out and f"Status: Downloaded newer image for {ref}" in out
    assert not any(line.startswith(layers[0]["id"]) for line in out)

    again = json_lines(run(root, "--progress", "json", "pull", ref).stderr)
    assert again[-1]["status"] == f"Image is up to date for {ref}"

    pushed = json_lines(run(root, "--progress", "json", "push", ref, f"{registry.host}/progress/pushed:1").stderr)
    assert pushed[-1]["result"] == "success" and pushed[-1]["digest"] == digest
    assert pushed[-1]["reference"] == f"{registry.host}/progress/pushed:1"
    assert any(event.get("status") == "Layer already exists" or event.get("status") == "Pushed"
               or str(event.get("status", "")).startswith("Mounted from") for event in pushed)

    quiet = run(root, "-q", "--progress", "json", "pull", ref)
    assert quiet.stdout == f"{ref}\n" and json_lines(quiet.stderr)[-1]["result"] == "success"


@pytest.mark.needs("docker-registry")
def test_json_error_is_the_final_object_and_nothing_else_on_stderr(registry, tmp_path):
    proc = run(tmp_path / "store", "--progress", "json", "pull", f"{registry.host}/progress/absent:1", expect=1)
    *_, result = json_lines(proc.stderr)
    assert result["result"] == "error" and "not found" in result["error"]
    verbose = run(tmp_path / "store", "-v", "--progress", "json", "pull", f"{registry.host}/progress/absent:1",
                  expect=1)
    records = json_lines(verbose.stderr)  # log records too are JSON objects
    assert any("log" in record for record in records)
    assert records[-1]["result"] == "error" and records[-1]["traceback"].startswith("Traceback")


@pytest.mark.needs("docker-registry", "skopeo")
def test_live_bar_on_a_terminal_and_plain_lines_without_escapes(registry, tmp_path):
    ref = push_test_image(registry, "progress/tty:1", {"b.txt": "b" * 5000})
    shown = run_in_terminal(tmp_path / "tty", "pull", ref)  # auto, on a terminal: the live bar
    assert ESCAPE in shown and BAR.search(shown), shown
    assert shown.splitlines()[-1].strip() == ref
    plain = run_in_terminal(tmp_path / "plain", "--progress", "plain", "pull", ref)
    assert "\x1b" not in plain and "Pull complete" in plain and not BAR.search(plain)
    piped = run(tmp_path / "piped", "pull", ref).stdout  # auto, in a pipe: plain
    assert "\x1b" not in piped and "Pull complete" in piped
    forced = run(tmp_path / "forced", "--progress", "tty", "pull", ref).stdout
    assert ESCAPE in forced and BAR.search(forced)

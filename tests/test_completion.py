"""Shell completion (argcomplete): commands, options and local references, asked as the
shell asks (``_ARGCOMPLETE``, ``COMP_LINE``, ``COMP_POINT``, as argcomplete's own tests
do), and through the bash function ``register-python-argcomplete`` writes. Completion
reads only ``index.json``; ``--help`` imports neither argcomplete nor the network code."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contentstore import Store
from contentstore.cli import complete_references
from contentstore.testing import build_image

BIN = Path(sys.executable).parent


def contentstore_command() -> str:
    found = shutil.which("contentstore", path=str(BIN)) or shutil.which("contentstore")
    if found is None:
        pytest.skip("the contentstore console script is not installed")
    return found


def complete(line: str, tmp_path, env=None) -> list[str]:
    """What ``contentstore`` offers for ``line`` with the cursor at its end."""
    out = tmp_path / "completions"
    environment = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
                   "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line, "COMP_POINT": str(len(line)), **(env or {})}
    proc = subprocess.run([contentstore_command()], env=environment, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [word.strip() for word in out.read_text().split("\n") if word.strip()]


@pytest.fixture
def populated(tmp_path):
    store = Store(tmp_path / "store")
    build_image(store, "docker.io/library/alpine:latest")
    build_image(store, "127.0.0.1:5000/team/app:1.0", {"other.txt": "x"})
    return store


def test_commands_and_options(tmp_path):
    assert complete("contentstore pu", tmp_path) == ["pull", "push"]
    assert complete("contentstore --pro", tmp_path) == ["--progress"]
    assert complete("contentstore --progress j", tmp_path) == ["json"]
    assert set(complete("contentstore pull --a", tmp_path)) == {"--all-platforms", "--all-tags"}
    assert complete("contentstore export x y --format d", tmp_path) == ["docker"]
    assert complete("contentstore blob l", tmp_path) == ["ls"]


def test_local_references(populated, tmp_path):
    root = str(populated.root)
    assert complete(f"contentstore --root {root} rmi 127", tmp_path) == ["127.0.0.1:5000/team/app:1.0"]
    # Docker Hub's images also by their short name; from $CONTENTSTORE_ROOT too.
    assert complete("contentstore inspect alp", tmp_path, env={"CONTENTSTORE_ROOT": root}) == ["alpine:latest"]
    assert complete(f"contentstore --root {root} tag docker.io/lib", tmp_path) == [
        "docker.io/library/alpine:latest"]
    offered = set(complete(f"contentstore --root {root} unpack ", tmp_path))
    assert {"127.0.0.1:5000/team/app:1.0", "alpine:latest", "docker.io/library/alpine:latest"} <= offered


def test_reference_completer_reads_only_index_json(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.json").write_text('{"manifests": [{"annotations": {"org.opencontainers.image.ref.name": '
                                     '"example.com/a:1"}}, {"annotations": {}}, 7, '
                                     '{"annotations": {"org.opencontainers.image.ref.name": ["x"]}}, '
                                     '{"annotations": ["not", "a", "map"]}]}')
    args = type("Args", (), {"root": str(root)})()
    assert complete_references("", args) == ["example.com/a:1"]
    (root / "index.json").write_text("not json")
    assert complete_references("", args) == []
    (root / "index.json").unlink()
    assert complete_references("", args) == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_bash_function_register_python_argcomplete_writes(populated, tmp_path):
    register = shutil.which("register-python-argcomplete", path=str(BIN))
    if register is None:
        pytest.skip("register-python-argcomplete is not installed")
    contentstore_command()
    line = f"contentstore --root {populated.root} rmi 127.0"
    script = (f'eval "$({register} contentstore)"\n'
              f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=({line}); '
              f'COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n'
              '_python_argcomplete contentstore\n'
              'printf "%s\\n""${COMPREPLY[@]}"\n')
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["127.0.0.1:5000/team/app:1.0"]


def test_help_stays_light():
    """``contentstore --help`` (and any run that is not a completion) loads neither
    argcomplete nor the network or store code."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "contentstore", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    for heavy in ("argcomplete", "requests", "ssl", "contentstore.store", "contentstore.remote.tls", "sqlite3"):
        assert heavy not in imported, heavy

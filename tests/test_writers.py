"""FileWriters: the pool that finishes the files unpack creates."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from contentstore.errors import UnpackError
from contentstore.image.writers import FileJob, FileWriters


def create(path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def test_bodies_modes_and_times_are_written_and_descriptors_closed(tmp_path):
    body = os.urandom(200_000)
    with FileWriters(2) as writers:
        fds = []
        for n in range(50):
            fd = create(tmp_path / f"f{n}")
            fds.append(fd)
            pieces = [memoryview(body)[:1000], memoryview(body)[1000:]] if n % 2 else []
            writers.submit(FileJob(fd, pieces, len(body) if n % 2 else 0, 1_500_000_000_123_456_789,
                                   None, 0o4751 if n == 3 else None, f"f{n}"))
        writers.wait()
    for n in range(50):
        st = os.stat(tmp_path / f"f{n}")
        assert (tmp_path / f"f{n}").read_bytes() == (body if n % 2 else b"")
        assert st.st_mtime_ns == 1_500_000_000_123_456_789
        assert stat.S_IMODE(st.st_mode) == (0o4751 if n == 3 else 0o600)
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_failure_names_its_entry_and_later_jobs_are_only_closed(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # writing to it fails: EPIPE
    with FileWriters(1) as writers:
        writers.submit(FileJob(write_end, [b"x"], 1, 0, None, None, "usr/bin/broken"))
        later = create(tmp_path / "later")
        with pytest.raises(UnpackError, match="entry 'usr/bin/broken'"):
            writers.submit(FileJob(later, [b"y"], 1, 0, None, None, "later"))
            writers.wait()
        with pytest.raises(UnpackError, match="usr/bin/broken"):
            writers.wait()
    assert (tmp_path / "later").read_bytes() == b""


def test_submit_waits_while_the_budget_is_spent(tmp_path):
    """A pipe nobody reads holds a writer; the bodies waiting are capped, so the next
    submit blocks until the pipe is read."""
    read_end, write_end = os.pipe()
    big = bytes(FileWriters.BUDGET // 2)
    returned = threading.Event()
    with FileWriters(1) as writers:
        writers.submit(FileJob(write_end, [big], len(big), 0, None, None, "blocked"))
        writers.submit(FileJob(create(tmp_path / "a"), [big], len(big), 0, None, None, "a"))

        def third():
            writers.submit(FileJob(create(tmp_path / "b"), [b"b"], 1, 0, None, None, "b"))
            returned.set()

        thread = threading.Thread(target=third)
        thread.start()
        assert not returned.wait(0.5)
        drained = 0
        while drained < len(big):
            drained += len(os.read(read_end, 1 << 20))
        assert returned.wait(10)
        thread.join()
        writers.wait()
    os.close(read_end)
    assert (tmp_path / "b").read_bytes() == b"b"


@pytest.mark.parametrize("setting, used", [("0", False), ("2", True)])
def test_unpack_uses_writer_threads_as_configured(setting, used, tmp_path, monkeypatch):
    from contentstore import Store
    from unpacking import entry, image, tar_of

    submitted = []
    real_submit = FileWriters.submit
    monkeypatch.setattr(FileWriters, "submit", lambda self, job: (submitted.append(job.entry), real_submit(self, job)))
    monkeypatch.setenv("CONTENTSTORE_UNPACK_WRITERS", setting)
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/w:1", tar_of(entry("d/", "dir"), entry("d/a", data="a"), entry("d/b", data="b")))
    store.unpack(ref, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "b").read_text() == "b"
    assert (submitted == ["d/a", "d/b"]) == used and (submitted == []) != used

"""ids: shape, entropy source, and the id pool across threads and forks."""

from __future__ import annotations

import os
import threading

import pytest

from wsgi_session.ids import ID_LENGTH, is_valid_id, new_id


def test_ids_are_url_safe_and_well_formed() -> None:
    sid = new_id()
    assert len(sid) == ID_LENGTH == 43
    assert is_valid_id(sid)
    assert set(sid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "value", ["", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "+", "A" * 42 + "\n"]
)
def test_is_valid_id_refuses_other_shapes(value: str) -> None:
    assert not is_valid_id(value)


def test_threads_never_share_an_id() -> None:
    got: list[list[str]] = [[] for _ in range(8)]

    def take(out: list[str]) -> None:
        out.extend(new_id() for _ in range(2000))

    threads = [threading.Thread(target=take, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    every = [sid for out in got for sid in out]
    assert len(every) == 16_000 == len(set(every))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process.*fork:DeprecationWarning")
def test_a_forked_child_never_hands_out_its_parents_next_ids() -> None:
    # Ids come from a pool filled 64 at a time; a child inherits the pool,
    # so without the at-fork reset two workers would issue the same ids.
    new_id()  # the pool now holds ids the parent has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, "".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 10 * ID_LENGTH).decode()
    os.waitpid(pid, 0)
    os.close(read)
    child_ids = {child[i : i + ID_LENGTH] for i in range(0, len(child), ID_LENGTH)}
    parent_ids = {new_id() for _ in range(200)}
    assert len(child_ids) == 10
    assert not child_ids & parent_ids


def test_ids_are_the_operating_systems_random_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Statistics cannot tell sha256(counter) from randomness; the source can.
    Every bit of an id must come from ``secrets`` (the OS's CSPRNG): fed known
    bytes, the ids are exactly those bytes, encoded."""
    import base64

    from wsgi_session import ids

    fed: list[bytes] = []

    def token_bytes(n: int) -> bytes:
        chunk = bytes((len(fed) * 7 + i) % 256 for i in range(n))
        fed.append(chunk)
        return chunk

    monkeypatch.setattr(ids, "token_bytes", token_bytes)
    monkeypatch.setattr(ids, "_pool", [])
    monkeypatch.setattr(ids, "_pool_pid", [0])
    got = [new_id() for _ in range(70)]  # more than one batch
    assert len(fed) == 2
    expected = []
    for chunk in fed:
        text = base64.urlsafe_b64encode(chunk).decode()
        expected += [text[i : i + 43] for i in range(0, len(text), 44)]
    assert set(got) <= set(expected) and len(set(got)) == 70
    assert all(len(base64.urlsafe_b64decode(sid + "=")) >= 32 for sid in got)  # >= 256 bits

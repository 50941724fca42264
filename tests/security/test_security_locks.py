"""Security: unguessable values, no release or extension without the value, TLS, a minimal ACL
user, and no secrets (passwords, lock values) in logs, reprs or exception messages."""

from __future__ import annotations

import base64
import logging
import pickle
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from redsync_core import LockNotAcquired, LockTaken, NodeError, Redsync, RedsyncError
from redsync_core.testing import RedisServer, free_port, memory_urls

ADMIN_PW = "admin-Pw-7731"
LOCKER_PW = "locker-Pw-90210"

#: What a lock user needs, found by removing each command in turn (test_each_acl_command_is_needed).
#: HELLO/AUTH on connect need no permission; scripts' inner commands are checked too.
MINIMAL_ACL = [
    "on", f">{LOCKER_PW}", "~locks:*", "resetchannels", "-@all",
    "+set", "+get", "+del", "+pexpire", "+pttl", "+eval", "+evalsha", "+info",
]  # fmt: skip


def _client(server: RedisServer) -> Any:
    return server.client()


def test_default_values_are_16_random_bytes_in_base64() -> None:
    rs = Redsync(memory_urls(3))
    values = set()
    for i in range(200):
        mutex = rs.new_mutex(f"v{i}")
        mutex.lock()
        assert mutex.value is not None
        assert len(mutex.value) == 24
        assert len(base64.b64decode(mutex.value, validate=True)) == 16
        values.add(mutex.value)
        mutex.unlock()
    assert len(values) == 200


def test_without_the_value_nobody_can_release_or_extend(redis_nodes: list[RedisServer]) -> None:
    with Redsync([n.url for n in redis_nodes]) as rs:
        owner = rs.new_mutex("locks:pay", expiry=5.0)
        owner.lock()
        before = []
        for server in redis_nodes:
            client = _client(server)
            before.append(int(client.pttl("locks:pay")))
            client.close()
        for guess in ["*", "?", "", owner.value[:-1] + "x"]:  # type: ignore[index]
            if not guess:
                continue
            thief = rs.new_mutex("locks:pay", value=guess, set_nx_on_extend=True, expiry=60.0)
            assert thief.extend() is False
            assert thief.unlock() is False
            assert thief.valid() is False
        for server, pttl in zip(redis_nodes, before, strict=True):
            client = _client(server)
            assert client.get("locks:pay") == owner.value.encode()  # type: ignore[union-attr]
            assert 0 < int(client.pttl("locks:pay")) <= pttl  # never extended by the thief
            client.close()
        assert owner.unlock()


# --- TLS --------------------------------------------------------------------------------------


def _make_certs(tmp: Path) -> dict[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        # Not a skip: a supported machine has openssl (the set-up script installs it), and a
        # skipped TLS test would silently stop backing the TLS claim of docs/safety.md.
        pytest.fail(
            "the openssl CLI is not installed: cannot make a CA and a server certificate for "
            "the TLS test; install openssl (apt-get install openssl)"
        )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=tmp)

    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): the CA needs key usage, the server
    # certificate an authority key identifier.
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "1", "-subj", "/CN=redsync test CA",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (tmp / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nauthorityKeyIdentifier=keyid,issuer\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "ext.cnf")  # fmt: skip
    return {name: str(tmp / f"{name}") for name in ("ca.crt", "server.crt", "server.key")}


def _tls_servers(redis_servers: Any, certs: dict[str, str], n: int) -> list[int]:
    """Start ``n`` servers that also listen with TLS; return their TLS ports.

    RedisServer probes readiness on its plain port, so that port stays open (`--port 0`
    would make the fixture wait forever); the tests only ever connect to the TLS port.
    """
    ports = []
    for _ in range(n):
        port = free_port()
        redis_servers(
            1,
            extra_args=[
                "--tls-port", str(port),
                "--tls-cert-file", certs["server.crt"],
                "--tls-key-file", certs["server.key"],
                "--tls-ca-cert-file", certs["ca.crt"],
                "--tls-auth-clients", "no",
            ],
        )  # fmt: skip
        ports.append(port)
    return ports


def test_rediss_urls_lock_over_verified_tls(redis_servers: Any, tmp_path: Path) -> None:
    certs = _make_certs(tmp_path)
    ports = _tls_servers(redis_servers, certs, 3)
    ca = certs["ca.crt"]
    urls = [f"rediss://127.0.0.1:{p}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}" for p in ports]
    # The first fan-out opens the TLS connections within its deadline: a 2 s lease's default
    # 100 ms (5 %) is less than three verified handshakes take on a loaded box.
    with Redsync(urls, expiry=2.0, timeout_factor=0.5) as rs:
        mutex = rs.new_mutex("locks:tls", auto_extend=True)
        with mutex:
            assert mutex.extend()
            assert mutex.valid()
        assert not mutex.lost
        assert rs.ping().ok
    # The same through client_options, and a client that does not trust the CA is refused.
    plain = [f"rediss://127.0.0.1:{p}/0" for p in ports]
    with Redsync(plain, client_options={"ssl_ca_certs": ca}) as rs:
        mutex = rs.new_mutex("locks:tls")
        mutex.lock()
        assert mutex.unlock()
    with Redsync(plain, tries=1) as rs, pytest.raises(LockNotAcquired) as info:
        rs.new_mutex("locks:tls").lock()
    assert "certificate" in str(info.value).lower() or "ssl" in str(info.value).lower()


# --- ACL --------------------------------------------------------------------------------------


def _acl_nodes(redis_servers: Any, rules: list[str]) -> tuple[list[RedisServer], list[str]]:
    servers = redis_servers(3, password=ADMIN_PW)
    for server in servers:
        admin = _client(server)
        admin.execute_command("ACL", "SETUSER", "locker", "reset", *rules)
        admin.close()
    urls = [f"redis://locker:{LOCKER_PW}@127.0.0.1:{s.port}/0" for s in servers]
    return servers, urls


def _flush_scripts(servers: list[RedisServer]) -> None:
    for server in servers:
        admin = _client(server)
        admin.script_flush()
        admin.close()


def test_minimal_acl_user_can_do_everything_the_library_does(redis_servers: Any) -> None:
    servers, urls = _acl_nodes(redis_servers, MINIMAL_ACL)
    with Redsync(urls, key_prefix="locks:", expiry=1.0) as rs:
        mutex = rs.new_mutex("a", auto_extend=True)  # batched extension script
        mutex.lock()
        assert mutex.extend()
        assert mutex.valid()
        assert rs.inspect("a").held
        _flush_scripts(servers)  # NOSCRIPT -> EVAL fallback
        assert mutex.valid()
        assert mutex.unlock()
        rival = rs.new_mutex("b")
        rival.lock()
        with pytest.raises(LockTaken) as taken:  # the release script reads the holder's PTTL
            rs.new_mutex("b", tries=1).lock()
        assert taken.value.retry_after is not None
        assert rs.force_release("b") == 3
        assert rs.ping().ok
    with Redsync(urls, tries=1) as rs, pytest.raises(LockNotAcquired):
        rs.new_mutex("outside-the-prefix").lock()  # ~locks:* confines the user


def _breaks_without(command: str, rs: Redsync, servers: list[RedisServer]) -> bool:
    """Return True when some library operation fails for a user lacking ``command``."""
    try:
        mutex = rs.new_mutex("a", tries=1)
        mutex.lock()
        if not (mutex.extend() and mutex.valid()):
            return True
        rival = rs.new_mutex("a", tries=1)
        try:
            rival.lock()
        except LockTaken as exc:
            if exc.retry_after is None:
                return True  # PTTL of the holder unavailable
        if any(node.error for node in rs.inspect("a").nodes):
            return True
        _flush_scripts(servers)
        if not mutex.unlock():
            return True
        return not rs.ping().ok
    except LockNotAcquired:
        return True


@pytest.mark.parametrize("command", [r for r in MINIMAL_ACL if r.startswith("+")])
def test_each_acl_command_is_needed(redis_servers: Any, command: str) -> None:
    servers, urls = _acl_nodes(redis_servers, [r for r in MINIMAL_ACL if r != command])
    with Redsync(urls, key_prefix="locks:", expiry=2.0) as rs:
        assert _breaks_without(command, rs, servers), f"{command} is not needed after all"


# --- secrets never shown ----------------------------------------------------------------------


def test_no_password_or_lock_value_in_logs_reprs_or_errors(
    redis_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, redis-py's included
    servers, urls = _acl_nodes(redis_servers, MINIMAL_ACL)
    wrong = f"redis://locker:wrong-{LOCKER_PW}@127.0.0.1:{servers[0].port}/0"
    seen: list[str] = []
    values: list[str] = []
    with Redsync(urls, key_prefix="locks:", expiry=1.0, tries=2, retry_delay=0.01) as rs:
        mutex = rs.new_mutex("x", auto_extend=True)
        mutex.lock()
        values.append(mutex.value or "")
        # rs.inspect() is left out on purpose: LockInfo.holder *is* the holder's value, by
        # design (operators' tools compare holders; its repr shows a fingerprint only).
        seen += [repr(rs), repr(mutex), str(mutex.until), *rs.addresses]
        rival_value = secrets.token_urlsafe(16)
        values.append(rival_value)
        rival = rs.new_mutex("x", value=rival_value)
        with pytest.raises(LockNotAcquired) as taken:
            rival.lock()
        unpickled = pickle.loads(pickle.dumps(taken.value))  # noqa: S301 - our own bytes
        seen += [str(taken.value), repr(taken.value), repr(unpickled)]
        servers[1].kill()
        servers[2].kill()
        assert mutex.unlock() is False
        with pytest.raises(LockNotAcquired) as unreachable:
            rs.new_mutex("y").lock()
        seen += [str(unreachable.value), repr(unreachable.value), repr(rs.ping())]
    with Redsync([wrong, *urls[1:]], tries=1) as rs:
        with pytest.raises(RedsyncError) as auth:
            rs.new_mutex("z").lock()
        seen += [str(auth.value), repr(auth.value), repr(rs.ping()), *rs.addresses]
        errors = getattr(auth.value, "errors", ())
        seen += [f"{e} {e.address!r}" for e in errors if isinstance(e, NodeError)]
    text = "\n".join(seen) + "\n" + caplog.text
    assert LOCKER_PW not in text
    assert ADMIN_PW not in text
    for value in values:
        assert value
        assert value not in text


def test_the_minimal_acl_user_can_take_fenced_locks(redis_servers: Any) -> None:
    # The counter key starts with the lock key, so ~locks:* covers it; no new command needed.
    servers, urls = _acl_nodes(redis_servers, MINIMAL_ACL)
    with Redsync(urls, key_prefix="locks:", fencing=True) as rs:
        tokens = []
        for _ in range(2):
            mutex = rs.new_mutex("a")
            mutex.lock()
            tokens.append(mutex.token)
            _flush_scripts(servers)  # NOSCRIPT -> EVAL fallback for both fenced scripts
            assert mutex.unlock()
        assert tokens == [1, 2]

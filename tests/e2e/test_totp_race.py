"""One TOTP code sent at the same moment to two real `custos serve` processes on one
catalog (SQLite, then PostgreSQL): exactly one request is accepted. The servers run on
127.0.0.1 with the real clock and are stopped by their PIDs."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pyotp
import pytest

from access.accounts.totp import WRONG_CODE
from access.accounts.users import NewUser, add_user
from access.decisions.rules import access_policy
from archive.config import load_settings
from archive.services import open_services
from tests.e2e.test_serve import custos_bin
from tests.servers import free_port, wait_until_serving

ROUNDS = 3  # a registrar of its own per round: each round uses the current step's code
PER_SERVER = 2  # requests sent to each server at once, all with the one code


@contextmanager
def serving(data: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(custos_bin()), "--data-dir", str(data), "serve", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, log)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def test_one_code_sent_to_two_servers_at_once_is_accepted_once(
    tmp_path: Path, catalog_url: str
) -> None:
    data = tmp_path / "data"
    env = {"CUSTOS_FSYNC": "false", "CUSTOS_DATABASE_URL": catalog_url}
    settings = load_settings(data_dir=data, environ=env)
    services = open_services(settings)
    policy = access_policy(settings)
    with services.session_scope() as session:
        users = [
            add_user(session, f"reg{n}", role="registrar", policy=policy) for n in range(ROUNDS)
        ]
    services.close()
    with ExitStack() as stack:
        urls = [stack.enter_context(serving(data, env, tmp_path / f"serve{n}.log")) for n in (0, 1)]
        for user in users:
            statuses, details = _race(urls, user)
            assert sorted(statuses) == [200] + [401] * (len(statuses) - 1), statuses
            assert set(details) == {WRONG_CODE}


def _race(urls: list[str], user: NewUser) -> tuple[list[int], list[str]]:
    """Send ``user``'s current code from 2 × PER_SERVER threads released together."""
    assert user.totp_secret
    headers = {
        "Authorization": f"Bearer {user.token}",
        "X-Custos-TOTP": pyotp.TOTP(user.totp_secret).now(),
    }
    targets = [url for url in urls for _ in range(PER_SERVER)]
    clients = [httpx.Client(base_url=url, timeout=60) for url in targets]
    for client in clients:  # connections open before the start: the requests leave together
        assert client.get("/health").status_code == 200
    gate = threading.Barrier(len(clients))
    answers: list[httpx.Response | BaseException] = [RuntimeError("no answer")] * len(clients)

    def send(n: int) -> None:
        gate.wait()
        try:
            answers[n] = clients[n].get("/registrar/access-log", headers=headers)
        except BaseException as exc:
            answers[n] = exc

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for client in clients:
        client.close()
    statuses, details = [], []
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
        statuses.append(answer.status_code)
        if answer.status_code != 200:
            details.append(answer.json()["detail"])
    return statuses, details


@pytest.fixture(autouse=True)
def _real_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers are other processes, on the real clock; so are the codes sent here."""
    monkeypatch.setattr("access.accounts.totp.clock", time.time)

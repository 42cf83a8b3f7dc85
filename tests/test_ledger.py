"""Claims in :mod:`sweeper.ledger`: work one worker at a time may do, taken over when its owner
died (also between creating the claim and writing its name)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from sweeper import ledger
from sweeper.study import open_storage


@pytest.fixture()
def storage(tmp_path: Path) -> optuna.storages.BaseStorage:
    return open_storage(str(tmp_path / "claims.journal"))


def _owner(storage: optuna.storages.BaseStorage, name: str) -> str | None:
    return optuna.load_study(storage=storage, study_name=name).user_attrs.get(ledger.ATTR_OWNER)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_creator_owns_a_claim_and_a_live_owner_keeps_it(
    storage: optuna.storages.BaseStorage,
) -> None:
    assert ledger.OwnedClaim(storage, "c", seed=0).try_take()
    assert _owner(storage, "c") == ledger.worker_id()
    # Another worker of this host whose owner (here: this test's parent) is alive waits.
    live = f"{socket.gethostname()}:{os.getppid()}"
    optuna.load_study(storage=storage, study_name="c").set_user_attr(ledger.ATTR_OWNER, live)
    assert not ledger.OwnedClaim(storage, "c", seed=0).try_take()
    assert _owner(storage, "c") == live


def test_a_dead_owners_claim_is_taken_over_at_once(storage: optuna.storages.BaseStorage) -> None:
    ledger.claim_study(storage, "c", seed=0)[0].set_user_attr(
        ledger.ATTR_OWNER, f"{socket.gethostname()}:{_dead_pid()}"
    )
    assert ledger.OwnedClaim(storage, "c", seed=0).try_take()
    assert _owner(storage, "c") == ledger.worker_id()


def test_a_claim_without_owner_is_taken_over_after_the_grace_period(
    storage: optuna.storages.BaseStorage,
) -> None:
    # Its creator died before writing its name.
    ledger.claim_study(storage, "c", seed=0)
    claim = ledger.OwnedClaim(storage, "c", seed=0, unowned_grace=0.3)
    assert not claim.try_take()
    assert _owner(storage, "c") is None
    time.sleep(0.35)
    assert claim.try_take()
    assert _owner(storage, "c") == ledger.worker_id()


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_deferred_signals_hold_a_signal_that_another_thread_receives(signum: int) -> None:
    # The kernel may hand a process signal to any thread (the logging and heartbeat threads):
    # a signal mask on the main thread alone let Python raise in the middle of the block.
    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signum, interrupt)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, args=(10,))
    other.start()
    reached = []
    try:
        with pytest.raises(_Interrupted, match=signal.Signals(signum).name):
            with ledger.deferred_signals():
                signal.pthread_kill(other.ident, signum)  # type: ignore[arg-type]
                time.sleep(0.3)  # Python runs handlers between bytecodes: it would have by now
                reached.append("end of block")
        assert reached == ["end of block"]
        # The handler is back: a signal now interrupts at once.
        with pytest.raises(_Interrupted):
            signal.raise_signal(signum)
            time.sleep(0.3)
    finally:
        stop.set()
        other.join()
        signal.signal(signum, previous)


def test_deferred_signals_deliver_nothing_when_nothing_came() -> None:
    before = signal.getsignal(signal.SIGINT)
    with ledger.deferred_signals():
        pass
    assert signal.getsignal(signal.SIGINT) is before


def test_workers_of_one_study_do_not_suggest_the_same_parameters(
    storage: optuna.storages.BaseStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With one seed for every worker, the first trials of a study came in equal pairs (TPE
    # starts with random draws): 6-7 repeated configurations in a 250-trial sweep on 2 cores.
    def first_x(study: optuna.Study) -> float:
        return study.ask().suggest_float("x", 0.0, 1.0)

    creator, created = ledger.claim_study(storage, "s", seed=42)
    joined = []
    for worker in ("host-a:100", "host-a:101"):
        monkeypatch.setattr(ledger, "worker_id", lambda worker=worker: worker)
        study, joined_created = ledger.claim_study(storage, "s", seed=42)
        assert not joined_created
        joined.append(first_x(study))
    assert created
    # The creator samples with the sweep's seed, as a one-worker sweep always did.
    alone = first_x(optuna.create_study(sampler=optuna.samplers.TPESampler(seed=42)))
    assert first_x(creator) == alone
    assert len({alone, *joined}) == 3
    # A joining worker's seed is its own, and the same for the same worker and seed.
    assert ledger.joining_seed(42) == ledger.joining_seed(42) != ledger.joining_seed(43)

import os
import signal

import pytest
from harness import Director


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # A runner that ends the suite with SIGTERM (tools/kernel_matrix.py on
    # Ctrl-C or timeout) gets what Ctrl-C gets: every fixture torn down, so
    # labs, namespaces and pinned maps are removed.
    signal.signal(signal.SIGTERM, _interrupted)


def pytest_sessionstart(session):
    # The suite is about real BPF: without root it cannot run, and says so
    # rather than skipping.
    if os.geteuid() != 0:
        raise pytest.UsageError("lvsxdp's tests load BPF programs and build network "
                                "namespaces: run them as root (make test)")


@pytest.fixture(scope="module")
def director():
    d = Director()
    yield d
    d.close()


@pytest.fixture
def fresh_director():
    d = Director()
    yield d
    d.close()

import os

import pytest
from harness import Director


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

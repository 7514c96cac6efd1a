import os

import pytest
from harness import Director, kernel_loops


def pytest_sessionstart(session):
    # The suite is about real BPF: without root it cannot run, and says so
    # rather than skipping.
    if os.geteuid() != 0:
        raise pytest.UsageError("lvsxdp's tests load BPF programs and build network "
                                "namespaces: run them as root (make test)")


# The packet tests run on each way this kernel builds the schedulers' loops.
@pytest.fixture(scope="module", params=kernel_loops())
def director(request):
    d = Director(loops=request.param)
    yield d
    d.close()


@pytest.fixture(params=kernel_loops())
def fresh_director(request):
    d = Director(loops=request.param)
    yield d
    d.close()

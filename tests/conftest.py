from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(int(os.environ.get("CUSTDYN_TEST_SEED", "12345")))


@pytest.fixture(scope="session")
def make_demo(tmp_path_factory):
    """``make_demo(customers, seed, ok=(0,))``: a demo workspace built by ``custdyn demo``
    in a fresh folder (the command's exit code one of ``ok``); its path."""
    from typer.testing import CliRunner

    from custdyn.cli import app

    def make(customers: int, seed: int, ok: tuple[int, ...] = (0,)):
        d = tmp_path_factory.mktemp("demo") / "ws"
        r = CliRunner().invoke(app, ["demo", str(d), "--customers", str(customers),
                                     "--seed", str(seed)])
        assert r.exit_code in ok, r.output
        return d

    return make


@pytest.fixture(scope="session")
def small_demo(make_demo):
    """A demo workspace of 150 customers (seed 11), built once per test process; copy it
    (:func:`small_demo_ws`) before changing it."""
    return make_demo(150, 11, ok=(0, 1))


@pytest.fixture
def small_demo_ws(small_demo, tmp_path):
    """A writable copy of :func:`small_demo`, open; closed after the test."""
    import shutil

    import custdyn

    d = tmp_path / "ws"
    shutil.copytree(small_demo, d)
    w = custdyn.Workspace.open(d)
    yield w
    w.close()

import logging

import pytest


@pytest.fixture(autouse=True)
def kipvs_logger_reset():
    """The CLI configures the `kipvs` logger for a terminal; give each test a clean one so caplog sees records."""
    logger = logging.getLogger("kipvs")
    yield
    logger.handlers[:] = []
    logger.propagate = True
    logger.setLevel(logging.NOTSET)

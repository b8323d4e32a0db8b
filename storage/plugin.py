"""The built-in ``sql`` plugin: customer lookup in the local ``customers`` table."""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from agent import hookimpl
from agent.events import Customer
from agent.numbers import DEFAULT_REGION
from storage.db import storage_errors
from storage.repository import find_customer

logger = logging.getLogger(__name__)


class SqlStore:
    """Answers ``lookup_customer`` from ``customers`` / ``customer_phones``.

    The runtime registers an instance under the name ``sql``. ``region`` is the
    default region used to normalise a national-form raw number.
    """

    def __init__(self, engine: Engine, *, region: str = DEFAULT_REGION) -> None:
        self.engine = engine
        self.region = region
        self._sessions = sessionmaker(engine)

    @hookimpl
    def lookup_customer(self, number_e164: str | None, number_raw: str) -> Customer | None:
        """The customer owning the number (``source="sql"``), or None to let the next plugin try.

        Blocks on the database; the runtime calls it in a worker thread.

        :raises agent.errors.StorageError: the database cannot be read.
        """
        with storage_errors(self.engine, "looking up a customer"), self._sessions() as session:
            customer = find_customer(session, number_e164, number_raw, region=self.region)
        logger.debug("customer lookup %s / %r: %s", number_e164, number_raw, customer and customer.id)
        return customer

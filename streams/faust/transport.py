"""The classes an app built by `streams.app.create_app` runs on: Faust's own, subclassed with
every fix of this package, and registered through Faust's extension points.

- Faust picks a broker URL's transport by its scheme (`faust.transport.drivers.TRANSPORTS`);
  `register` adds `SCHEME` (`insights-kafka://host:port`) for `Transport`, whose `Consumer`,
  `Producer` and `TransactionManager` class attributes Faust instantiates. The consumer
  builds its thread in `_new_consumer_thread`.
- Faust builds the table manager from the `TableManager` setting; ours builds `Recovery`.

Each concern module contributes one subclass; this module composes them, in one place:

- `Consumer` = `LaneConsumer` (batch_lane) + `AckConsumer` (acks) + `FastPathConsumer` (fetch)
  + `PausedAssignmentConsumer` (rebalance) + `GatedCommitConsumer` (transactions) +
  `BoundedWaitEmptyConsumer` (shutdown). Only `_getmany` is overridden twice; the method
  resolution order runs the lane's outside the rebalance fix's, so the fetch gets the snapshot
  of the active partitions and the lane checks the live set after it.
- `AIOKafkaConsumerThread` = `ListOffsetsHighwaters` (highwaters) + `FetchWaitThread` (fetch).
- `Producer` = `TransactionalProducer`; `TransactionManager` =
  `StaleProducerStoppingTransactionManager` (transactions).
- `Recovery` = `IdlePollRecovery` (recovery) + `OrderedRecoveryCompletion` (rebalance).

The composed classes keep Faust's class names and loggers: mode prefixes each log line with
the class name ("[^--Consumer]: ..."), and streams/runtime/logs.py sets levels by logger
name. An app on a `kafka://` URL or without the `TableManager` setting runs on Faust's
classes (only the two process-wide patches of `recovery` and `records` reach it). Pinned by
tests/unit/test_faust_integration.py.
"""

from __future__ import annotations

from typing import Final

import faust.tables.manager as faust_manager
import faust.tables.recovery as faust_recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.faust.acks import AckConsumer
from streams.faust.batch_lane import LaneConsumer
from streams.faust.fetch import FastPathConsumer, FetchWaitThread
from streams.faust.highwaters import ListOffsetsHighwaters
from streams.faust.rebalance import OrderedRecoveryCompletion, PausedAssignmentConsumer
from streams.faust.recovery import IdlePollRecovery
from streams.faust.shutdown import BoundedWaitEmptyConsumer
from streams.faust.transactions import (
    GatedCommitConsumer,
    StaleProducerStoppingTransactionManager,
    TransactionalProducer,
)

__all__ = [
    "SCHEME",
    "AIOKafkaConsumerThread",
    "Consumer",
    "Producer",
    "Recovery",
    "TableManager",
    "TransactionManager",
    "Transport",
    "register",
]

SCHEME: Final = "insights-kafka"
"""The broker URL scheme of `Transport` (`insights-kafka://host:port`)."""


class AIOKafkaConsumerThread(ListOffsetsHighwaters, FetchWaitThread):
    """Faust's consumer thread with the highwater and fetch-wait fixes."""


class Consumer(
    LaneConsumer,
    AckConsumer,
    FastPathConsumer,
    PausedAssignmentConsumer,
    GatedCommitConsumer,
    BoundedWaitEmptyConsumer,
):
    """Faust's aiokafka consumer with every consumer fix, on our consumer thread."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return AIOKafkaConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Producer(TransactionalProducer):
    """Faust's aiokafka producer with the transaction fixes."""


class TransactionManager(StaleProducerStoppingTransactionManager):
    """Faust's transaction manager with the rebalance fixes."""


class Recovery(IdlePollRecovery, OrderedRecoveryCompletion):
    """Faust's recovery service with the poll and completion fixes."""


class TableManager(faust_manager.TableManager):
    """Faust's table manager, building our `Recovery` (the app's `TableManager` setting)."""

    @property
    def recovery(self) -> faust_recovery.Recovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport building our consumer, producer and transaction manager."""

    Consumer = Consumer
    Producer = Producer
    TransactionManager = TransactionManager


# mode gives each Service subclass a new logger named after its module unless its base set one
# explicitly, and none of these bases did (a logger mode made for another class of the same
# Faust module does not count): restore Faust's, so streams/runtime/logs.py's levels for "faust.*"
# apply as before.
for _ours, _faust in (
    (AIOKafkaConsumerThread, faust_aiokafka.AIOKafkaConsumerThread),
    (Consumer, faust_aiokafka.Consumer),
    (Producer, faust_aiokafka.Producer),
    (TransactionManager, faust_consumer.TransactionManager),
    (Recovery, faust_recovery.Recovery),
    (TableManager, faust_manager.TableManager),
):
    _ours.logger = _faust.logger


def register() -> None:
    """Make `SCHEME` URLs use `Transport` (idempotent)."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"

"""Under `exactly_once`: commit transactions at unit-of-work boundaries, commit every
transaction that holds records, and keep a transaction (and its producer) only where this
worker owns its partition.

Subclasses of Faust's aiokafka `Producer`, the transport `Consumer` and `TransactionManager`
(registered by `transport`):

1. `GatedCommitConsumer._commit_tps`: a commit takes the app's `CommitGate` (see
   `commit_gate`): it waits for running units of work and holds new ones back, so a
   transaction never ends between a batch's sends and its acknowledgement. After a failed
   unit nothing is committed at all.
2. Faust's `TransactionManager.commit` commits only the transactions of partitions with new
   acknowledged offsets. A transaction holding only timer-driven records (flushed changes,
   windows closed by idleness) stayed open until the next input on its partition, and the
   broker aborted it after `transaction.timeout.ms`, losing its records. Here every
   transactional producer that sent since its last commit (`TransactionalProducer.send`,
   `sends.send_batched_caused_by` mark it) is committed too (`commit_sent_transactions`).
3. At each rebalance Faust begins a transaction for every assigned partition, also for one
   still in a transaction (aiokafka warns "Invalid state transition IN_TRANSACTION ->
   IN_TRANSACTION"). `TransactionalProducer.maybe_begin_transaction` leaves one in progress.
4. A commit that ends the transactions (a rebalance, shutdown) is followed by more processing
   (batches in hand, and a batch Faust acknowledges for an agent cancelled before running
   it), whose offsets then failed a commit with no transaction. Here the gate closes when the
   transactions end and reopens when new ones begin
   (`TransactionManager.on_rebalance`), and `TransactionalProducer.commit_transactions` leaves
   offsets of a partition without a transaction to its next owner.
5. Faust stops the producers of revoked partitions picked with the new assignment's standby
   list, where a standby partition counts for every topic of its group: a partition that
   went from active to standby kept its producer, another worker fenced it, and when the
   partition came back the fenced producer was reused (ProducerFenced). Here every producer
   whose id is not active in the new assignment is stopped first.
6. At a revocation Faust ends the transactions with `commit(start_new_transaction=False)`, but
   `Consumer.commit` returns without committing when another commit (the timer's) is
   running, and that one begins new transactions: they stayed open through the rebalance.
   `GatedCommitConsumer.commit_and_end_transactions` waits for a running commit, then
   commits.

Upstream: faust-streaming/faust#323 (open) reports the IN_TRANSACTION warnings and a
ProducerFenced crash at rebalances under exactly_once; no upstream issue found for the others.
Pinned by tests/unit/test_commit_gate.py and tests/unit/test_batched_send.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

import structlog
from aiokafka.errors import ProducerFenced
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, HeadersArg, RecordMetadata

from streams.faust.commit_gate import commit_gate

__all__ = [
    "GatedCommitConsumer",
    "StaleProducerStoppingTransactionManager",
    "TransactionalProducer",
    "commit_sent_transactions",
    "sent_in",
]

logger = structlog.get_logger(__name__)


def sent_in(producer: Any) -> set[str]:
    """Transactional ids that sent records since their last commit (kept on Faust's producer;
    any producer object, so stand-ins in tests work too)."""
    sent: set[str] = producer.__dict__.setdefault("_insights_sent_in", set())
    return sent


async def commit_sent_transactions(producer: Any, start_new_transaction: bool) -> None:
    """Commit the transactions of Faust's producer that sent records since their last commit
    (and begin their next one)."""
    marked = sent_in(producer)
    for transactional_id in sorted(marked):
        async with producer._trn_locks[transactional_id]:
            transactional = producer._transaction_producers.get(transactional_id)
            if transactional is not None and transactional._txn_manager.is_in_transaction():
                await transactional.commit_transaction()
                if start_new_transaction:
                    await transactional.begin_transaction()
        marked.discard(transactional_id)


class TransactionalProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer that marks the transactions it sends in, commits offsets only
    into open transactions, and never begins a transaction twice (fixes 2, 3, 4)."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: HeadersArg | None,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        if transactional_id:
            sent_in(self).add(transactional_id)
        return await super().send(
            topic, key, value, partition, timestamp, headers, transactional_id=transactional_id
        )

    async def commit_transactions(
        self,
        tid_to_offset_map: Mapping[str, Mapping[TP, int]],
        group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        in_transaction = {
            tid: offsets
            for tid, offsets in tid_to_offset_map.items()
            if tid not in self._transaction_producers
            or self._transaction_producers[tid]._txn_manager.is_in_transaction()
        }
        if len(in_transaction) < len(tid_to_offset_map):
            logger.info(
                "offsets_left_to_next_owner",
                transactional_ids=sorted(set(tid_to_offset_map) - set(in_transaction)),
            )
        await super().commit_transactions(
            in_transaction, group_id, start_new_transaction=start_new_transaction
        )
        sent_in(self).difference_update(tid_to_offset_map)

    async def maybe_begin_transaction(self, transactional_id: str) -> None:
        transactional = self._transaction_producers.get(transactional_id)
        if transactional is None or not transactional._txn_manager.is_in_transaction():
            await super().maybe_begin_transaction(transactional_id)
        if transactional is None:  # a new producer: it fenced any other with this id
            logger.info("transactional_producer_started", transactional_id=transactional_id)

    async def stop_transaction(self, transactional_id: str) -> None:
        if transactional_id in self._transaction_producers:
            logger.info("transactional_producer_stopped", transactional_id=transactional_id)
        await super().stop_transaction(transactional_id)


class GatedCommitConsumer(faust_aiokafka.Consumer):
    """Faust's consumer whose commits take the commit gate, commit every transaction that sent,
    and end the transactions only once no other commit is running (fixes 1, 2, 4, 6)."""

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        gate = commit_gate(self.app)
        if gate.failed is not None:
            logger.warning("commit_refused_after_failed_work", error=repr(gate.failed))
            return False
        if not self.in_transaction:
            return bool(await super()._commit_tps(tps, start_new_transaction))
        async with gate.commit():
            committed = await super()._commit_tps(tps, start_new_transaction)
            try:
                await commit_sent_transactions(self.transactions.producer, start_new_transaction)
            except ProducerFenced as exc:  # another worker owns the partition now
                await self.app.crash(exc)
            if not start_new_transaction:
                gate.close()
            return bool(committed)

    async def commit_and_end_transactions(self) -> None:
        while await self.maybe_wait_for_commit_to_finish():
            # That commit began new transactions; another may have started since.
            logger.info("transactions_end_waited_for_running_commit")
        # No await between the last check and commit() claiming the commit slot.
        await self.commit(start_new_transaction=False)


class StaleProducerStoppingTransactionManager(faust_consumer.TransactionManager):
    """Faust's transaction manager that stops every transactional producer not active in the
    new assignment before starting the assigned ones, then reopens the gate (fixes 4, 5)."""

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]
    ) -> None:
        active = self._tps_to_transactional_ids(assigned)
        producer: Any = self.producer
        for transactional_id in sorted(set(producer._transaction_producers) - active):
            await producer.stop_transaction(transactional_id)  # not active here any more
        await super().on_rebalance(assigned, revoked, newly_assigned)
        await commit_gate(self.app).reopen()

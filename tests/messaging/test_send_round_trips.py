"""How many round trips to PostgreSQL a batch of sends takes, counted on the wire (tests/pgwire.py):
under psycopg 3 (the ASGI server's driver) its statements go in two pipelines, between BEGIN and
COMMIT."""

from __future__ import annotations

import sys

import pytest
from django.db import connection

from accounts import services as account_services
from messaging import services
from messaging.models import Message
from messaging.services import _core
from superapp.core.errors import ApplicationError
from tests.pgwire import RoundTrips

from .conftest import direct, group

pytestmark = pytest.mark.django_db(transaction=True)


def _send(sender, conv, cmid, text="hi"):
    return {
        "sender_id": sender.pk,
        "client_msg_id": cmid,
        "kind": "text",
        "conversation_id": conv.pk,
        "text": text,
    }


def _pipelining() -> bool:
    psycopg = sys.modules.get("psycopg")
    connection.ensure_connection()
    return psycopg is not None and isinstance(connection.connection, psycopg.Connection)


def test_a_batch_of_plain_sends_takes_two_pipelines_between_begin_and_commit(alice, bob, carol, settings):
    settings.MESSAGING_PUSH_ENABLED = False  # (the offline members' push task runs eagerly in tests)
    ab, ac = direct(alice, bob), direct(alice, carol)
    team = group(alice, bob, carol)

    def batch(tag):
        return services.message_send_many(
            [_send(alice, ab, f"{tag}1"), _send(bob, ab, f"{tag}2"), _send(carol, team, f"{tag}3"),
             _send(alice, ac, f"{tag}4")]
        )  # fmt: skip

    with RoundTrips() as trips, trips.django_connection():
        batch("warm")  # this process learns the chats' kinds; statements get prepared
        pipelining = _pipelining()
        trips.reset()
        outcomes = batch("b")
        counted = trips.count
    assert all(isinstance(o, services.SendResult) and o.created for o in outcomes), outcomes
    # psycopg 3: BEGIN (psycopg waits for its answer before it queues more), [lock timeout,
    # locks, retries' lookup, members, relations, ids], [rows, events], COMMIT. psycopg2 has no
    # pipeline: BEGIN, the same 8 statements one by one, COMMIT.
    assert counted == (4 if pipelining else 10)


def test_a_lone_send_on_a_batch_thread_is_seven_round_trips(alice, bob, settings):
    settings.MESSAGING_PUSH_ENABLED = False
    ab = direct(alice, bob)

    def lone(tag):
        return services.message_send_many([_send(alice, ab, tag)], defer=True)  # a batch of one

    with RoundTrips() as trips, trips.django_connection():
        lone("warm")
        trips.reset()
        outcomes = lone("lone")
        counted = trips.count
    assert outcomes[0].created
    # BEGIN, the lock timeout, the claim, the relation check, INSERT, publish, COMMIT, with either
    # driver. (The lock timeout in one psycopg 3 pipeline with the claim saved a round trip but
    # cost more in psycopg's pipeline machinery than it saved: BENCHMARKS.md "Messaging".)
    assert counted == 7


@pytest.mark.parametrize("guess", ["another pair", "a group"])
def test_a_wrong_guess_of_a_chats_pair_never_lets_a_refused_send_through(alice, bob, carol, guess):
    """The batch asks for direct peers' relations with the locks, from what this process last saw
    of each chat; ids are reused across databases (tests flush them), so a guess may be wrong:
    it is checked against the locked row, and the right relation asked for."""
    ab, ac = direct(alice, bob), direct(alice, carol)
    account_services.block_add(user=bob, target_id=alice.pk)
    _core._PAIRS[ab.pk] = (alice.pk, carol.pk) if guess == "another pair" else None
    outcomes = services.message_send_many(
        [_send(alice, ab, "tb", "to bob"), _send(alice, ac, "tc", "to carol")]
    )
    with pytest.raises(ApplicationError) as alone:
        services.message_send(**_send(alice, ab, "tb2", "to bob, alone"))
    assert type(outcomes[0]) is type(alone.value) and outcomes[0].code == alone.value.code
    assert isinstance(outcomes[1], services.SendResult) and outcomes[1].created
    assert not Message.objects.filter(conversation=ab, client_msg_id__in=["tb", "tb2"]).exists()
    assert _core._PAIRS[ab.pk] == tuple(sorted((alice.pk, bob.pk)))  # learnt from the locked row

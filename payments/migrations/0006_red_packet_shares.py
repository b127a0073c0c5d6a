"""Red packets are split when they are sent: one ``RedPacketShare`` row per unclaimed share.

A grab claims one with ``FOR UPDATE SKIP LOCKED`` instead of queueing on the packet's row (see
``payments/red_packets.py``). Packets still active when this runs are split here, their remainder
drawn with the same rules as ``red_packets.next_share`` (copied: a migration must not change when
the code does), so they stay grabbable and refundable by the new code.

Deploying: stop ALL the old payments code while this runs and until the new code is up: sending,
grabbing and the expiry refund (Celery beat and its workers), in every process. Old code does not
know the shares: its grabs take money from the packet's counts without consuming a share, its
refund leaves the shares behind, and a packet it sends after this ran has no shares. The new
grab's guard on the counts (``red_packets._COUNT_SQL``: the packet active, the last share exactly
the remainder) then keeps the money exact: such grabs are refused (``red_packet_empty``, or
``red_packet_expired`` for a refunded packet) and the packet is refunded its counts when it
expires; nothing is lost or paid twice, but members are refused shares they should have had
(docs/payments.md, "Deploying migration 0006_red_packet_shares").
"""

import secrets

import django.db.models.deletion
from django.db import migrations, models


def _draws(kind, remaining_amount, remaining_count, rng):
    """The remainder's shares, in the order grabs take them (``next_share`` as of this migration)."""
    shares = []
    while remaining_count:
        if remaining_count == 1:
            share = remaining_amount
        elif kind == "normal":
            share = remaining_amount // remaining_count
        else:
            upper = min(2 * remaining_amount // remaining_count, remaining_amount - (remaining_count - 1))
            share = rng.randint(1, max(1, upper))
        shares.append(share)
        remaining_amount -= share
        remaining_count -= 1
    return shares


def split_active_packets(apps, schema_editor):
    """Split every active packet's remainder (locked, so a grab of the old code waits for it)."""
    RedPacket = apps.get_model("payments", "RedPacket")
    RedPacketShare = apps.get_model("payments", "RedPacketShare")
    rng = secrets.SystemRandom()
    packets = (
        RedPacket.objects.select_for_update()
        .filter(status="active", remaining_count__gt=0)
        .order_by("id")
        .values_list("id", "kind", "remaining_amount", "remaining_count")
    )
    for packet_id, kind, amount, count in packets:
        if RedPacketShare.objects.filter(packet_id=packet_id).exists():
            continue  # split already (the code that splits at send time ran first)
        RedPacketShare.objects.bulk_create(
            [RedPacketShare(packet_id=packet_id, amount=a) for a in _draws(kind, amount, count, rng)]
        )


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0005_dispute_resolving_customer'),
    ]

    operations = [
        migrations.CreateModel(
            name='RedPacketShare',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('amount', models.BigIntegerField()),
                ('packet', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='shares', to='payments.redpacket')),
            ],
            options={
                'indexes': [models.Index(fields=['packet', 'id'], name='red_packet_share_next')],
                'constraints': [models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='red_packet_share_positive')],
            },
        ),
        migrations.RunPython(split_active_packets, migrations.RunPython.noop, elidable=False),
    ]

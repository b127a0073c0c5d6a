"""Settings of the payments load benchmarks: the project's production settings, two limits raised.

Issue #4 asks for one 1,000-share red packet grabbed by 2,000 distinct users. A red packet now
lives in a chat and only the chat's members grab it, so that shape needs a group of 2,001
(the sender and the grabbers) and a 1,000-share packet, over two product limits:
``MESSAGING_GROUP_MAX_MEMBERS`` (500, as WeChat's groups) and ``PAYMENTS_RED_PACKET_MAX_COUNT``
(100). They are raised here, for this benchmark only; nothing else differs from production.
"""

from superapp.settings import *  # noqa: F403

MESSAGING_GROUP_MAX_MEMBERS = 2_001
PAYMENTS_RED_PACKET_MAX_COUNT = 1_000

"""The order in which a prioritised consumer tries its lanes: highest first, a share for each lower lane."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.kafka.lanes import LaneOrder
from shared.topics import CHANNELS, LANES, Topics

pytestmark = pytest.mark.unit


def test_each_lower_lane_goes_first_once_a_cycle_and_the_highest_the_rest() -> None:
    order = LaneOrder(3, cycle=8)
    cycle = [order.next() for _ in range(8)]
    assert cycle[:6] == [[0, 1, 2]] * 6
    assert cycle[6:] == [[2, 0, 1], [1, 0, 2]]
    # The next cycle is the same again.
    assert [order.next() for _ in range(8)] == cycle
    assert Counter(turn[0] for turn in cycle) == {0: 6, 1: 1, 2: 1}


def test_one_lane_is_always_first_and_more_lanes_than_turns_are_refused() -> None:
    order = LaneOrder(1)
    assert [order.next() for _ in range(3)] == [[0]] * 3
    with pytest.raises(ValueError, match="do not fit"):
        LaneOrder(9, cycle=8)


def test_the_normal_lane_keeps_the_streams_own_name_and_retries_find_their_channel_in_any_lane() -> None:
    topics = Topics("herald")
    assert topics.lanes("send.email") == [
        "herald.send.email.high.v1",
        "herald.send.email.v1",
        "herald.send.email.low.v1",
    ]
    assert topics.requests_for("normal") == topics.requests
    assert {topics.channel_of(topic) for topic in topics.lanes("send.sms")} == {"sms"}
    assert topics.channel_of(topics.routable_for("high")) is None
    # requests and routable in lanes, status, delay and dlq, each channel in lanes.
    assert len(topics.all()) == len(set(topics.all())) == 2 * len(LANES) + 3 + len(CHANNELS) * len(LANES)
    with pytest.raises(ValueError, match="unknown priority"):
        topics.send_for("email", "urgent")

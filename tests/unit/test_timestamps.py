from datetime import datetime, timedelta, timezone

import pytest

from mlops_kit.core.timestamps import (alarm_timestamp, epoch_iso_seconds, iso_micros, iso_millis,
                                       iso_seconds, parse_iso)

MOMENT = datetime(2026, 12, 3, 17, 9, 35, 123456, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["2026-12-03T17:09:35.123456Z", "2026-12-03T17:09:35.123456+00:00",
                                  "2026-12-03T18:09:35.123456+0100", "2026-12-03T17:09:35.123456"])
def test_every_form_the_services_write_parses_to_the_same_moment(text):
    assert parse_iso(text) == MOMENT


@pytest.mark.parametrize("text", ["", "yesterday", None, 17])
def test_what_is_not_a_time_is_named(text):
    with pytest.raises(ValueError, match="not an ISO-8601 time"):
        parse_iso(text)


def test_the_kits_forms_round_trip_and_sort_as_time():
    for render, precision in ((iso_millis, timedelta(milliseconds=1)),
                              (iso_micros, timedelta(microseconds=1)),
                              (iso_seconds, timedelta(seconds=1)),
                              (alarm_timestamp, timedelta(milliseconds=1))):
        assert MOMENT - precision < parse_iso(render(MOMENT)) <= MOMENT
    later = MOMENT + timedelta(milliseconds=1)
    assert iso_millis(MOMENT) < iso_millis(later) and len(iso_millis(MOMENT)) == len(iso_millis(later))
    assert alarm_timestamp(MOMENT) == "2026-12-03T17:09:35.123+0000"
    assert epoch_iso_seconds(MOMENT.timestamp()) == "2026-12-03T17:09:35Z"
    # Another zone is written in UTC.
    assert iso_millis(MOMENT.astimezone(timezone(timedelta(hours=5)))) == "2026-12-03T17:09:35.123Z"

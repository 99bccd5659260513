"""The garbage collector's tuning while rows stream, and its restoration afterwards."""

from __future__ import annotations

import gc

import pytest

from segship.engine.gc_tuning import STREAMING_GC_THRESHOLD, streaming_gc


def test_while_rows_stream_existing_objects_are_left_out_and_young_collections_are_rarer():
    before = gc.get_threshold()
    with streaming_gc():
        assert gc.get_threshold() == (max(before[0], STREAMING_GC_THRESHOLD), *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_settings_are_restored_when_streaming_fails():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), streaming_gc():
        raise RuntimeError("the source failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

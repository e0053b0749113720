"""A scan collects garbage less often while it runs, and gives the process its own setting back after."""

from __future__ import annotations

import gc
import threading

from renewal.flow.scan import YOUNG_COLLECTION_EVERY, fewer_collections


def test_the_setting_is_raised_while_scans_run_and_restored_by_the_last_one():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        first_in = threading.Event()
        release = threading.Event()

        def scan() -> None:
            with fewer_collections():
                first_in.set()
                release.wait(10)

        other = threading.Thread(target=scan)
        other.start()
        first_in.wait(10)
        with fewer_collections():
            assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, 11, 12)
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, 11, 12)  # the other scan still runs
        release.set()
        other.join(10)
        assert gc.get_threshold() == (700, 11, 12)
    finally:
        gc.set_threshold(*before)


def test_a_process_that_already_collects_less_often_keeps_its_setting():
    before = gc.get_threshold()
    try:
        gc.set_threshold(50_000, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == (50_000, 10, 10)
        assert gc.get_threshold() == (50_000, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_a_scan_that_fails_still_restores_the_setting():
    before = gc.get_threshold()
    try:
        with fewer_collections():
            raise RuntimeError("a vault failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before

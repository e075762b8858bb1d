"""`config.coalescing`: the asks of one commit's callbacks made once, after them; nothing gathered outlives a
rollback."""

import pytest
from django.db import transaction

from config.coalescing import coalescing_commit_hooks, gather, once

pytestmark = pytest.mark.django_db


def test_asks_made_by_the_callbacks_of_a_block_run_once_after_the_last_of_them(django_capture_on_commit_callbacks):
    done = []
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic(), coalescing_commit_hooks():
        for number in range(3):
            transaction.on_commit(
                lambda number=number: (done.append(number), once("work", lambda: done.append("work")))
            )
    assert done == [0, 1, 2, "work"]
    once("work", lambda: done.append("now"))  # outside a block: at once
    assert done[-1] == "now"


def test_items_gathered_by_the_callbacks_of_a_block_are_handed_over_in_one_list_in_order(
    django_capture_on_commit_callbacks,
):
    handed: list[list] = []
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic(), coalescing_commit_hooks():
        for number in range(4):
            key = "odd" if number % 2 else "even"
            transaction.on_commit(lambda number=number, key=key: gather(key, number, handed.append))
    assert handed == [[0, 2], [1, 3]]
    gather("even", 9, handed.append)  # outside a block: at once, alone
    assert handed[-1] == [9]


def test_a_rolled_back_savepoint_drops_its_callbacks_and_a_rolled_back_block_leaves_no_gathering(
    django_capture_on_commit_callbacks,
):
    done = []
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic(), coalescing_commit_hooks():
        transaction.on_commit(lambda: once("kept", lambda: done.append("kept")))
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            transaction.on_commit(lambda: once("dropped", lambda: done.append("dropped")))
            raise ZeroDivisionError
    assert done == ["kept"]
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        transaction.atomic(),
        coalescing_commit_hooks(),
    ):
        transaction.on_commit(lambda: once("rolled back", lambda: done.append("rolled back")))
        transaction.set_rollback(True)
    assert callbacks == [] and done == ["kept"]
    once("after", lambda: done.append("after"))  # nothing left gathering: at once
    assert done == ["kept", "after"]


def test_failing_gathered_work_is_logged_and_the_rest_still_runs(django_capture_on_commit_callbacks, caplog):
    done = []
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic(), coalescing_commit_hooks():
        transaction.on_commit(lambda: (once("fails", lambda: 1 / 0), once("runs", lambda: done.append("runs"))))
    assert done == ["runs"] and "coalesced work 'fails' failed" in caplog.text

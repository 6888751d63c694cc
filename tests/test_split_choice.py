"""The pool's side of one image over several workers, without processes: how many workers a group
takes, when "auto" splits, and when a group is formed anew."""

from __future__ import annotations

from studio.pool.group import GroupBook, SplitChooser, SplitMode, group_size
from studio.pool.speed import Size


def test_group_size_is_a_power_of_two_up_to_eight() -> None:
    assert [group_size(n) for n in range(0, 11)] == [0, 0, 2, 2, 4, 4, 4, 4, 8, 8, 8]


def test_auto_tries_a_size_then_keeps_the_faster_way() -> None:
    big, small = Size(2048, 2048, 9), Size(1024, 1024, 9)
    c = SplitChooser()
    assert not c.want(SplitMode.NEVER, big, 2, 5.0)
    assert c.want(SplitMode.ALWAYS, small, 2, 0.1)
    assert c.want(SplitMode.AUTO, big, 2, 5.0)  # never measured: try it
    c.observe(1, big, 2, 30.0)  # a group's first split image compiles: not a measurement
    assert c.want(SplitMode.AUTO, big, 2, 5.0)
    c.observe(1, big, 2, 2.9)
    assert c.want(SplitMode.AUTO, big, 2, 5.0)
    c.observe(1, small, 2, 0.95)  # the same graphs serve every size
    assert not c.want(SplitMode.AUTO, small, 2, 0.93)  # no faster split: one worker makes it
    assert c.want(SplitMode.AUTO, small, 4, 0.93)  # four workers are another measurement


def test_group_book_keeps_a_group_until_its_members_change_or_it_breaks() -> None:
    book = GroupBook()
    first = book.form((0, 1))
    assert book.form((0, 1)) == first
    second = book.form((0, 1, 2, 3))
    assert second[0] == first[0] + 1
    book.broken()
    third = book.form((0, 1, 2, 3))
    assert third[0] == second[0] + 1 and third[1] > 0

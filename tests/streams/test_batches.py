"""The buffer between the batch fetch and a stage's agent (triage.streams.batches); the fetch
itself runs against the real broker in tests/integration."""

from __future__ import annotations

import asyncio

from triage.streams.batches import BatchBuffer


def test_batches_come_in_fetch_order_up_to_the_limit() -> None:
    async def go() -> list[list[int]]:
        buffer = BatchBuffer(high_water=100)
        buffer.put(range(7))
        buffer.put([7, 8])
        return [await buffer.get(4), await buffer.get(4), await buffer.get(4)]

    assert asyncio.run(go()) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


def test_a_reader_waits_for_the_next_fetch() -> None:
    async def go() -> list[int]:
        buffer = BatchBuffer()
        reader = asyncio.ensure_future(buffer.get(10))
        await asyncio.sleep(0.01)
        assert not reader.done()
        buffer.put([1, 2])
        return await asyncio.wait_for(reader, 1)

    assert asyncio.run(go()) == [1, 2]


def test_a_full_buffer_holds_the_fetcher_back_until_the_stage_takes_some() -> None:
    async def go() -> tuple[bool, bool]:
        buffer = BatchBuffer(high_water=5)
        buffer.put(range(6))
        room = asyncio.ensure_future(buffer.wait_room())
        await asyncio.sleep(0.01)
        blocked = not room.done()
        await buffer.get(3)  # under the mark again
        await asyncio.wait_for(room, 1)
        return blocked, room.done()

    assert asyncio.run(go()) == (True, True)


def test_clear_forgets_the_buffered_records_and_frees_the_fetcher() -> None:
    async def go() -> int:
        buffer = BatchBuffer(high_water=2)
        buffer.put([1, 2, 3])
        buffer.clear()
        await asyncio.wait_for(buffer.wait_room(), 1)
        return len(buffer)

    assert asyncio.run(go()) == 0

"""The continuous batcher's scheduling: a token budget per step across callers, oldest first, cancelled callers
skipped, a failing input failing alone. The step function here records what it was given and returns each
sequence's length (the batcher's contract is only "rows in order"); the real model runs in the server tests."""

import asyncio
import threading

import pytest
import torch

from workers.embeddings.batcher import BatcherStoppedError, EmbeddingBatcher


class Recorder:
    def __init__(self, gate: threading.Event | None = None, poison: int | None = None):
        self.steps: list[list[int]] = []
        self._gate = gate
        self._poison = poison

    def __call__(self, seqs: list[list[int]]) -> torch.Tensor:
        if self._gate is not None:
            self._gate.wait(10)
        self.steps.append([len(s) for s in seqs])
        if self._poison is not None and any(s[0] == self._poison for s in seqs):
            raise RuntimeError("bad input")
        return torch.tensor([[float(len(s)), float(s[0])] for s in seqs])


async def _with(batcher: EmbeddingBatcher, coro):
    batcher.start()
    try:
        return await coro
    finally:
        await batcher.stop()


async def test_steps_respect_the_token_budget_and_batch_across_callers():
    gate = threading.Event()
    rec = Recorder(gate)
    b = EmbeddingBatcher(rec, max_num_batched_tokens=100, max_num_seqs=8)

    async def scenario():
        first = asyncio.create_task(b.embed([[1] * 10]))  # runs alone while the gate holds the step
        await asyncio.sleep(0.05)
        callers = [asyncio.create_task(b.embed([[i] * 30, [i] * 30])) for i in range(2, 5)]
        await asyncio.sleep(0.05)
        gate.set()
        return await first, await asyncio.gather(*callers)

    first, rest = await _with(b, scenario())
    assert first[0].tolist() == [10.0, 1.0]
    assert [[r.tolist() for r in rows] for rows in rest] == [[[30.0, i], [30.0, i]] for i in (2, 3, 4)]
    # 6 waiting sequences of 30 tokens: 3 fit the 100-token budget per step, across the three callers
    assert rec.steps == [[10], [30, 30, 30], [30, 30, 30]]


async def test_a_long_sequence_over_the_budget_still_runs_alone_and_max_num_seqs_caps_a_step():
    rec = Recorder()
    b = EmbeddingBatcher(rec, max_num_batched_tokens=16, max_num_seqs=2)
    out = await _with(b, b.embed([[7] * 40, [1], [2], [3]]))
    assert [r[1].item() for r in out] == [7, 1, 2, 3]
    assert rec.steps == [[40], [1, 1], [1]]


async def test_cancelled_caller_is_skipped():
    gate = threading.Event()
    rec = Recorder(gate)
    b = EmbeddingBatcher(rec, max_num_batched_tokens=1000)

    async def scenario():
        running = asyncio.create_task(b.embed([[1]]))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(b.embed([[2] * 5, [2] * 6]))
        kept = asyncio.create_task(b.embed([[3] * 7]))
        await asyncio.sleep(0.05)
        gone.cancel()
        # let the cancellation reach the batcher's futures (wrap_future chains it through a loop callback) before
        # the blocked step ends and the next batch is taken
        while not gone.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        gate.set()
        await running
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    kept = await _with(b, scenario())
    assert kept[0].tolist() == [7.0, 3.0]
    assert rec.steps == [[1], [7]]


async def test_a_failing_input_fails_only_its_request():
    gate = threading.Event()
    rec = Recorder(gate, poison=9)
    b = EmbeddingBatcher(rec, max_num_batched_tokens=1000)

    async def scenario():
        blocker = asyncio.create_task(b.embed([[1]]))
        await asyncio.sleep(0.05)
        bad = asyncio.create_task(b.embed([[9, 9]]))
        good = asyncio.create_task(b.embed([[4] * 3]))
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        with pytest.raises(RuntimeError, match="bad input"):
            await bad
        return await good

    good = await _with(b, scenario())
    assert good[0].tolist() == [3.0, 4.0]
    assert rec.steps[1] == [2, 3]  # batched together first, then retried one by one
    assert sorted(rec.steps[2:]) == [[2], [3]]


async def test_requests_after_stop_are_refused():
    b = EmbeddingBatcher(Recorder())
    b.start()
    await b.stop()
    with pytest.raises(BatcherStoppedError):
        await b.embed([[1]])

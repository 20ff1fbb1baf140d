"""Scheduler unit tests, driven without a model: the sampled token is fed in by the test (the model's boundary)."""

from workers.engine.config import EngineConfig
from workers.engine.outputs import SamplerOutput
from workers.engine.sampling_params import SamplingParams
from workers.engine.scheduler import ScheduledBatch, Scheduler
from workers.engine.sequence import Sequence, SequenceStatus

BS = 4
EOS = 0


def make(
    num_blocks: int = 64, budget: int = 512, max_num_seqs: int = 8, max_loras: int = 4, caching: bool = True
) -> Scheduler:
    cfg = EngineConfig(
        model="unused", block_size=BS, num_kv_blocks=num_blocks, max_num_batched_tokens=budget,
        max_num_seqs=max_num_seqs, max_loras=max_loras, enable_prefix_caching=caching,
    )  # fmt: skip
    return Scheduler(cfg, num_blocks, eos_token_ids=[EOS])


_ids = iter(range(10**6))


def seqs_for(prompt_len: int, max_tokens: int = 8, n: int = 1, adapter: str | None = None) -> list[Sequence]:
    params = SamplingParams(n=n, temperature=0, max_tokens=max_tokens)
    prompt = [100 + next(_ids) % 1000 for _ in range(prompt_len)]  # distinct prompts: no accidental prefix hits
    rid = f"r{next(_ids)}"
    return [Sequence(next(_ids), rid, i, prompt, params, max_tokens, adapter) for i in range(n)]


def step(s: Scheduler, token: int = 7) -> tuple[ScheduledBatch | None, list[Sequence]]:
    batch = s.schedule()
    if batch is None:
        return None, []
    out = SamplerOutput([token] * sum(batch.samples))
    return batch, s.postprocess(batch, out)


def test_chunked_prefill_respects_the_token_budget() -> None:
    s = make(budget=16)
    (a,) = seqs_for(40)
    (b,) = seqs_for(10)
    s.add([a])
    s.add([b])
    batch, done = step(s)
    assert batch is not None and batch.seqs == [a] and batch.num_new_tokens == [16] and batch.samples == [False]
    assert done == [] and a.num_computed_tokens == 16 and a.num_output_tokens == 0
    batch, _ = step(s)
    assert batch is not None and batch.num_new_tokens == [16] and batch.is_prefill
    batch, done = step(s)  # a's last 8 tokens + the first 8 of b
    assert batch is not None and batch.seqs == [a, b] and batch.num_new_tokens == [8, 8]
    assert batch.samples == [True, False] and done == [a] and a.num_output_tokens == 1
    batch, done = step(s)  # a decodes first, then b's last 2 prompt tokens
    assert batch is not None and batch.seqs == [a, b] and batch.num_new_tokens == [1, 2]
    assert batch.samples == [True, True] and batch.num_tokens <= 16


def test_decodes_keep_running_while_a_long_prompt_is_prefilled() -> None:
    s = make(budget=8)
    (short,) = seqs_for(4, max_tokens=20)
    s.add([short])
    step(s)
    (long,) = seqs_for(64)
    s.add([long])
    for _ in range(8):
        batch, _ = step(s)
        assert batch is not None and batch.seqs[0] is short and batch.num_new_tokens[0] == 1
        assert batch.num_tokens <= 8
    assert long.num_computed_tokens == 8 * 7 and long.num_output_tokens == 0


def test_decode_only_steps_are_not_prefill() -> None:
    s = make()
    for _ in range(3):
        s.add(seqs_for(5))
    batch, _ = step(s)
    assert batch is not None and batch.is_prefill and len(batch.seqs) == 3
    batch, _ = step(s)
    assert batch is not None and not batch.is_prefill and batch.num_new_tokens == [1, 1, 1]


def test_max_num_seqs_caps_the_running_set() -> None:
    s = make(max_num_seqs=2)
    for _ in range(3):
        s.add(seqs_for(4))
    batch, _ = step(s)
    assert batch is not None and len(batch.seqs) == 2 and len(s.waiting) == 1


def test_preemption_drops_the_newest_and_recomputes_it() -> None:
    s = make(num_blocks=6, caching=False)  # 24 slots; no prefix cache, so the recompute is from scratch
    (old,) = seqs_for(8, max_tokens=12)
    (new,) = seqs_for(8, max_tokens=12)
    s.add([old])
    s.add([new])
    step(s)  # both prefilled: 2 blocks each, 2 free
    for _ in range(4):
        step(s)  # each grows to 12 tokens: 3 blocks each, the pool is full
    assert s.block_manager.num_free_blocks == 0 and s.num_preemptions == 0
    batch, _ = step(s)  # token 13 needs a 4th block for both: the newest goes back to the queue
    assert s.num_preemptions == 1
    assert new.status is SequenceStatus.WAITING and new.block_table == [] and new.num_computed_tokens == 0
    assert s.waiting[0] is new and batch is not None and batch.seqs == [old]
    tokens_before = list(new.token_ids)
    while old.status is SequenceStatus.RUNNING:
        step(s)
    # old finished (length) and freed its blocks: new is recomputed over prompt + its outputs, then samples.
    batch, done = step(s)
    assert batch is not None and batch.seqs == [new] and batch.num_new_tokens == [len(tokens_before)]
    assert batch.samples == [True] and new.token_ids[:-1] == tokens_before and done == [new]
    while s.has_unfinished():
        step(s)
    assert new.finish_reason == "length" and new.num_output_tokens == 12
    assert s.block_manager.num_free_blocks == 6


def test_eos_and_max_tokens_finish_and_free() -> None:
    s = make(num_blocks=8)
    (a,) = seqs_for(5, max_tokens=3)
    (b,) = seqs_for(5, max_tokens=3)
    s.add([a])
    s.add([b])
    step(s)
    batch = s.schedule()
    assert batch is not None
    s.postprocess(batch, SamplerOutput([EOS, 9]))
    assert a.finish_reason == "stop" and a.block_table == [] and b.status is SequenceStatus.RUNNING
    step(s)
    assert b.finish_reason == "length" and b.num_output_tokens == 3
    assert not s.has_unfinished() and s.block_manager.num_free_blocks == 8


def test_n_choices_fork_from_the_leader_after_its_prefill() -> None:
    s = make()
    group = seqs_for(10, n=3)
    s.add(group)
    leader, c1, c2 = group
    assert s.num_waiting == 3
    batch, _ = step(s)
    assert batch is not None and batch.seqs == [leader]  # the prompt is prefilled once
    assert c1.status is SequenceStatus.RUNNING and c1.block_table[:2] == leader.block_table[:2]
    assert s.block_manager.blocks[leader.block_table[0]].ref_count == 3
    batch, _ = step(s)  # the children recompute only the partial block's 2 tokens, then sample
    assert batch is not None and batch.seqs == [leader, c1, c2] and batch.num_new_tokens == [1, 2, 2]
    assert c1.num_cached_tokens == leader.num_cached_tokens


def test_at_most_max_loras_adapters_per_step() -> None:
    s = make(max_loras=2)
    for name in ("a", "b", "c", "a"):
        s.add(seqs_for(4, adapter=name))
    batch, _ = step(s)
    assert batch is not None and sorted(x.adapter_id or "" for x in batch.seqs) == ["a", "a", "b"]
    assert [x.adapter_id for x in s.waiting] == ["c"]


def test_a_prefix_hit_skips_computed_tokens() -> None:
    s = make()
    (a,) = seqs_for(13)
    s.add([a])
    step(s)
    b = Sequence(10**7, "rb", 0, a.token_ids[:13], a.params, 8)
    s.add([b])
    batch, _ = step(s)
    assert batch is not None and batch.seqs[-1] is b and batch.num_new_tokens[-1] == 1
    assert b.num_cached_tokens == 12


def test_a_shared_prefix_in_flight_is_waited_for_not_recomputed() -> None:
    s = make(budget=64)
    (a,) = seqs_for(13)
    b = Sequence(10**7 + 1, "rb", 0, a.token_ids[:12] + [5, 6, 7], a.params, 8)
    s.add([a])
    s.add([b])
    batch, _ = step(s)  # b's first block is being computed by a: b waits instead of computing it too
    assert batch is not None and batch.seqs == [a]
    batch, _ = step(s)
    assert batch is not None and batch.seqs[-1] is b and b.num_cached_tokens == 12
    assert batch.num_new_tokens[-1] == 3

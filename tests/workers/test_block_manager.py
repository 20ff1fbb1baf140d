"""BlockManager unit tests: allocation, freeing, ref counts, prefix-cache hits by chained hashes, eviction."""

import pytest

from workers.engine.block_manager import BlockManager, chain_root, hash_block
from workers.engine.sampling_params import SamplingParams
from workers.engine.sequence import Sequence

BS = 4


def make_seq(tokens: list[int], adapter: str | None = None, seq_id: int = 0) -> Sequence:
    return Sequence(seq_id, f"r{seq_id}", 0, tokens, SamplingParams(), max_tokens=8, adapter_id=adapter)


def admit(bm: BlockManager, seq: Sequence) -> int:
    """Admit the whole prompt at once and mark it computed, as one prefill step would. -> tokens hit."""
    hits = bm.lookup(seq)
    num_new = seq.num_tokens - len(hits) * BS
    assert bm.can_allocate(seq, hits, num_new)
    bm.allocate(seq, hits, num_new)
    cached = seq.num_computed_tokens
    seq.num_computed_tokens = seq.num_tokens
    bm.commit(seq, cached)
    return cached


def test_allocate_and_free_return_every_block() -> None:
    bm = BlockManager(num_blocks=8, block_size=BS, enable_prefix_caching=False)
    seq = make_seq(list(range(10)))  # 10 tokens -> 3 blocks
    admit(bm, seq)
    assert len(seq.block_table) == 3 and len(set(seq.block_table)) == 3
    assert bm.num_free_blocks == 5
    assert all(bm.blocks[b].ref_count == 1 for b in seq.block_table)
    bm.deallocate(seq)
    assert bm.num_free_blocks == 8 and seq.block_table == [] and seq.num_computed_tokens == 0
    assert all(b.ref_count == 0 for b in bm.blocks)


def test_append_takes_a_new_block_only_at_a_block_boundary() -> None:
    bm = BlockManager(num_blocks=4, block_size=BS, enable_prefix_caching=False)
    seq = make_seq(list(range(7)))
    admit(bm, seq)
    assert len(seq.block_table) == 2
    seq.token_ids.append(100)  # token 8 fits the second block
    assert bm.can_append(seq, 1)
    bm.may_append(seq, 1)
    seq.num_computed_tokens += 1
    assert len(seq.block_table) == 2
    seq.token_ids.append(101)  # token 9 needs a third block
    bm.may_append(seq, 1)
    assert len(seq.block_table) == 3 and bm.num_free_blocks == 1


def test_can_append_and_can_allocate_refuse_when_the_pool_is_short() -> None:
    bm = BlockManager(num_blocks=3, block_size=BS, enable_prefix_caching=False)
    a = make_seq(list(range(12)))  # exactly 3 blocks
    admit(bm, a)
    a.token_ids.append(1)
    assert not bm.can_append(a, 1)
    b = make_seq([1, 2], seq_id=1)
    assert not bm.can_allocate(b, [], 2)
    with pytest.raises(RuntimeError):
        bm.may_append(a, 1)


def test_same_prefix_shares_blocks_with_ref_counts() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    prompt = list(range(1, 11))  # 2 full blocks + 2 tokens
    a, b = make_seq(prompt), make_seq(prompt + [99], seq_id=1)
    assert admit(bm, a) == 0
    assert admit(bm, b) == 2 * BS  # both full blocks hit
    assert b.block_table[:2] == a.block_table[:2]
    assert b.block_table[2] != a.block_table[2]  # the partial block is never shared
    assert [bm.blocks[x].ref_count for x in a.block_table[:2]] == [2, 2]
    bm.deallocate(a)
    assert [bm.blocks[x].ref_count for x in b.block_table[:2]] == [1, 1]
    assert bm.prefix_cache_hits == 2 * BS and bm.prefix_cache_queries == len(prompt) * 2 + 1


def test_the_last_token_is_always_computed() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    prompt = list(range(8))  # exactly 2 blocks
    admit(bm, make_seq(prompt))
    again = make_seq(prompt, seq_id=1)
    assert len(bm.lookup(again)) == 1  # the second block holds the last token: recomputed for its logits


def test_freed_blocks_keep_their_hash_and_revive() -> None:
    bm = BlockManager(num_blocks=8, block_size=BS)
    prompt = list(range(20, 33))  # 3 full blocks + 1
    a = make_seq(prompt)
    admit(bm, a)
    first_blocks = a.block_table[:3]
    bm.deallocate(a)
    assert bm.num_free_blocks == 8  # cached-free blocks count as free
    b = make_seq(prompt, seq_id=1)
    assert admit(bm, b) == 3 * BS
    assert b.block_table[:3] == first_blocks
    assert bm.num_free_blocks == 4


def test_another_adapter_never_hits() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    prompt = list(range(9))
    admit(bm, make_seq(prompt, adapter="a1"))
    assert bm.lookup(make_seq(prompt, adapter="a2", seq_id=1)) == []
    assert bm.lookup(make_seq(prompt, adapter=None, seq_id=2)) == []
    assert len(bm.lookup(make_seq(prompt, adapter="a1", seq_id=3))) == 2
    assert hash_block(None, [1, 2], "a") != hash_block(None, [1, 2], None)


def test_another_account_never_hits_and_its_own_always_does() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    prompt = list(range(13))  # 3 full blocks before the last token

    def seq(account: str, seq_id: int, adapter: str | None = None) -> Sequence:
        return Sequence(seq_id, f"r{seq_id}", 0, prompt, SamplingParams(), 8, adapter, account_id=account)

    assert admit(bm, seq("acct-b", 0)) == 0
    assert bm.lookup(seq("acct-a", 1)) == []  # the same text from another account: nothing cached for it
    assert bm.lookup(seq("anon", 2)) == []
    assert len(bm.lookup(seq("acct-b", 3))) == 3  # within the account caching is unchanged
    assert bm.lookup(seq("acct-b", 4, adapter="a1")) == []  # the chain starts from (account, adapter)
    assert admit(bm, seq("acct-a", 5)) == 0
    assert len(bm.lookup(seq("acct-a", 6))) == 3
    # Parts are length-prefixed: an account id can't be shaped to run into another account's root.
    assert chain_root("ab", "c") != chain_root("a", "bc")


def test_the_hash_chain_covers_the_whole_prefix() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    admit(bm, make_seq([1, 2, 3, 4, 5, 6, 7, 8, 9]))
    # same second block, different first block: no hit at all
    assert bm.lookup(make_seq([0, 2, 3, 4, 5, 6, 7, 8, 9], seq_id=1)) == []
    # same first block, different second: one block
    assert len(bm.lookup(make_seq([1, 2, 3, 4, 5, 6, 7, 0, 9], seq_id=2))) == 1


def test_lru_eviction_of_unreferenced_cached_blocks() -> None:
    bm = BlockManager(num_blocks=4, block_size=BS)
    old, new = make_seq([1] * 4 + [2]), make_seq([3] * 4 + [4], seq_id=1)  # 2 blocks each, 1 full
    admit(bm, old)
    bm.deallocate(old)
    admit(bm, new)
    bm.deallocate(new)
    assert len(bm.cached_free) == 2 and len(bm.hash_to_block_id) == 2
    # 3 fresh blocks: 2 plain free ones, then the least recently freed cached block is evicted
    big = make_seq([9] * 12, seq_id=2)
    bm.allocate(big, [], 12)
    assert len(bm.hash_to_block_id) == 1
    assert bm.lookup(make_seq([1] * 4 + [2], seq_id=3)) == []  # old: evicted
    assert len(bm.lookup(make_seq([3] * 4 + [4], seq_id=4))) == 1  # new: still cached
    assert bm.num_free_blocks == 1


def test_fork_shares_the_full_prompt_blocks() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS, enable_prefix_caching=False)
    leader = make_seq(list(range(10)))
    admit(bm, leader)
    child = make_seq(list(range(10)), seq_id=1)
    bm.fork(leader, child)
    assert child.block_table == leader.block_table[:2]
    assert child.num_computed_tokens == 2 * BS
    assert [bm.blocks[b].ref_count for b in leader.block_table] == [2, 2, 1]
    bm.deallocate(leader)
    bm.deallocate(child)
    assert bm.num_free_blocks == 16


def test_invalidate_adapter_unpublishes_its_blocks() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    prompt = list(range(9))
    a = make_seq(prompt, adapter="a1")
    admit(bm, a)
    kept = make_seq(prompt, adapter="a2", seq_id=1)
    admit(bm, kept)
    bm.deallocate(a)
    assert bm.invalidate_adapter("a1") == 2
    assert bm.lookup(make_seq(prompt, adapter="a1", seq_id=2)) == []
    assert len(bm.lookup(make_seq(prompt, adapter="a2", seq_id=3))) == 2
    assert bm.num_free_blocks == 16 - 3

"""Paged KV cache bookkeeping: fixed-size blocks, ref counts, and prefix caching by chained block hashes.

A block is in exactly one of three states:
  in use        ref_count > 0 (maybe with a hash: then other sequences with the same prefix share it)
  cached free   ref_count == 0 with a hash: its KV is still valid and a later prefix hit revives it; evicted LRU
  free          ref_count == 0, no hash
"""

import hashlib
from array import array
from collections import OrderedDict, deque

from workers.engine.sequence import Sequence


def chain_root(account_id: str, adapter_id: str | None) -> bytes:
    """Where a sequence's hash chain starts: its account and adapter, so identical prompts of two accounts never share
    blocks (a cached-token count would otherwise tell one tenant what another sent)."""
    h = hashlib.blake2b(b"hearth-prefix-root", digest_size=16)
    for part in (account_id, adapter_id or ""):
        raw = part.encode()
        h.update(len(raw).to_bytes(4, "little") + raw)
    return h.digest()


def hash_block(prev: bytes | None, token_ids: list[int], adapter_id: str | None) -> bytes:
    # Chained and keyed by the adapter (LoRA changes K/V: the same tokens under another adapter are other KV).
    # A cryptographic hash, not Python's hash(): a crafted collision would hand one tenant another's KV.
    h = hashlib.blake2b(prev or b"\0" * 16, digest_size=16)
    adapter = (adapter_id or "").encode()
    h.update(len(adapter).to_bytes(4, "little") + adapter)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "adapter_id")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_count = 0
        self.hash: bytes | None = None
        self.adapter_id: str | None = None


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_block_ids: deque[int] = deque(range(num_blocks))
        self.cached_free: OrderedDict[int, None] = OrderedDict()  # least recently freed first
        self.hash_to_block_id: dict[bytes, int] = {}
        self.prefix_cache_queries = 0  # tokens looked up
        self.prefix_cache_hits = 0  # tokens found

    @property
    def num_total_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_block_ids) + len(self.cached_free)

    def num_blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # -- prefix cache -------------------------------------------------------------------------------------------
    def _block_hash(self, seq: Sequence, i: int) -> bytes:
        # seq.block_hashes memoises the chain; token ids of a full block never change
        while len(seq.block_hashes) <= i:
            j = len(seq.block_hashes)
            prev = seq.block_hashes[j - 1] if j else chain_root(seq.account_id, seq.adapter_id)
            tokens = seq.token_ids[j * self.block_size : (j + 1) * self.block_size]
            seq.block_hashes.append(hash_block(prev, tokens, seq.adapter_id))
        return seq.block_hashes[i]

    def lookup(self, seq: Sequence) -> list[int]:
        """Block ids of the longest cached prefix of a sequence that holds no blocks yet. Side-effect free.

        At most (num_tokens - 1) // block_size blocks: the last token is always computed, for its logits."""
        if not self.enable_prefix_caching:
            return []
        hits: list[int] = []
        for i in range((seq.num_tokens - 1) // self.block_size):
            block_id = self.hash_to_block_id.get(self._block_hash(seq, i))
            if block_id is None:
                break
            hits.append(block_id)
        return hits

    def hashes_completed(self, seq: Sequence, num_new_tokens: int) -> list[bytes]:
        """Hashes of the blocks that computing num_new_tokens more of seq will fill (prefix caching only)."""
        if not self.enable_prefix_caching:
            return []
        first = seq.num_computed_tokens // self.block_size
        last = (seq.num_computed_tokens + num_new_tokens) // self.block_size
        return [self._block_hash(seq, i) for i in range(first, last)]

    def next_block_hash(self, seq: Sequence, hits: list[int]) -> bytes | None:
        """The hash of the first full block after a lookup's hits (None: no further block could ever hit)."""
        if not self.enable_prefix_caching or len(hits) >= (seq.num_tokens - 1) // self.block_size:
            return None
        return self._block_hash(seq, len(hits))

    # -- admission of a waiting sequence ---------------------------------------------------------------------------
    def can_allocate(self, seq: Sequence, hits: list[int], num_new_tokens: int) -> bool:
        num_new_blocks = self.num_blocks_for(len(hits) * self.block_size + num_new_tokens) - len(hits)
        num_revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)  # cached-free hits leave the free pool
        return num_new_blocks + num_revived <= self.num_free_blocks

    def allocate(self, seq: Sequence, hits: list[int], num_new_tokens: int) -> None:
        if seq.block_table:
            raise RuntimeError(f"{seq} already holds blocks")
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.cached_free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        seq.num_computed_tokens = len(hits) * self.block_size
        if self.enable_prefix_caching:
            self.prefix_cache_queries += seq.num_tokens
            self.prefix_cache_hits += seq.num_computed_tokens
        self._grow(seq, seq.num_computed_tokens + num_new_tokens)

    # -- growth of a running sequence (decode token or next prefill chunk) ------------------------------------------
    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        needed = self.num_blocks_for(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        return needed <= self.num_free_blocks

    def may_append(self, seq: Sequence, num_new_tokens: int) -> None:
        self._grow(seq, seq.num_computed_tokens + num_new_tokens)

    def _grow(self, seq: Sequence, num_tokens: int) -> None:
        for _ in range(self.num_blocks_for(num_tokens) - len(seq.block_table)):
            seq.block_table.append(self._take_free_block())

    def _take_free_block(self) -> int:
        if self.free_block_ids:
            block_id = self.free_block_ids.popleft()
        elif self.cached_free:
            block_id, _ = self.cached_free.popitem(last=False)  # evict the least recently freed cached block
            self._forget_hash(self.blocks[block_id])
        else:
            raise RuntimeError("out of KV blocks: the scheduler must check can_allocate/can_append first")
        self.blocks[block_id].ref_count = 1
        return block_id

    def commit(self, seq: Sequence, prev_num_computed: int) -> None:
        """Publish the blocks that became full and computed this step, so later prefixes can hit them."""
        if not self.enable_prefix_caching:
            return
        for i in range(prev_num_computed // self.block_size, seq.num_computed_tokens // self.block_size):
            block = self.blocks[seq.block_table[i]]
            if block.hash is not None:
                continue  # a prefix hit: already published
            h = self._block_hash(seq, i)
            if h in self.hash_to_block_id:
                continue  # the same prefix computed twice (admitted in the same step): keep the first copy
            block.hash = h
            block.adapter_id = seq.adapter_id
            self.hash_to_block_id[h] = block.block_id

    def trim(self, seq: Sequence) -> None:
        """Roll back a speculative step: free the tail blocks that only rejected draft tokens reached (the next step
        needs blocks for num_tokens). They were taken fresh for the draft, so they hold no hash and no other owner."""
        keep = self.num_blocks_for(seq.num_tokens)
        while len(seq.block_table) > keep:
            block = self.blocks[seq.block_table.pop()]
            assert block.ref_count == 1 and block.hash is None, "a draft's tail block is never shared or published"
            block.ref_count = 0
            self.free_block_ids.appendleft(block.block_id)

    # -- release ---------------------------------------------------------------------------------------------------
    def deallocate(self, seq: Sequence) -> None:
        # Tail first, so under LRU a sequence's last blocks (the least shareable) are evicted before its prefix.
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.hash is not None:
                    self.cached_free[block_id] = None
                else:
                    self.free_block_ids.append(block_id)
        seq.block_table.clear()
        seq.num_computed_tokens = 0

    def fork(self, parent: Sequence, child: Sequence) -> None:
        """Let another choice of the same request share the parent's full prompt blocks (n > 1).

        The partial last block is not shared (each choice writes its own tokens there): the child recomputes those
        few tokens, and always the last prompt token, whose logits it samples from."""
        if child.block_table:
            raise RuntimeError(f"{child} already holds blocks")
        num_shared = min((parent.num_prompt_tokens - 1) // self.block_size, len(parent.block_table))
        for block_id in parent.block_table[:num_shared]:
            self.blocks[block_id].ref_count += 1
            child.block_table.append(block_id)
        child.num_computed_tokens = num_shared * self.block_size
        child.block_hashes = parent.block_hashes[:num_shared]

    def invalidate_adapter(self, adapter_id: str) -> int:
        """Unpublish every cached block computed under an adapter (it was replaced or deleted). Blocks in use stay
        with their sequences but can no longer be hit. Returns the number of blocks unpublished."""
        count = 0
        for block in self.blocks:
            if block.hash is not None and block.adapter_id == adapter_id:
                self._forget_hash(block)
                if block.ref_count == 0:
                    del self.cached_free[block.block_id]
                    self.free_block_ids.append(block.block_id)
                count += 1
        return count

    def _forget_hash(self, block: Block) -> None:
        if block.hash is not None and self.hash_to_block_id.get(block.hash) == block.block_id:
            del self.hash_to_block_id[block.hash]
        block.hash = None
        block.adapter_id = None
